// The schedule of a stored DAG on the Templates page (`GET /api/v1/schedules`): its cron,
// time zone, policy, paused or not, next fire times and last error, and a Pause/Resume
// button (`POST /templates/{name}/schedule/pause|resume`). The API computes the fire times;
// the page only shows them (in the browser's time; the exact instant is in `datetime`).
import { type Api, seg } from "../api";
import { h, when } from "../ui";

export interface Schedule {
  template: string;
  cron: string;
  timezone: string;
  concurrencyPolicy: string;
  paused: boolean;
  nextFireTimes: string[];
  state: { lastError: string | null; lastTime: string | null; fired: number; skipped: number };
}

/** How many fire times the page asks for per schedule. */
export const NEXT = 3;

/** Every schedule by stored DAG name; none when this server has no schedules API. */
export async function loadSchedules(api: Api, signal: AbortSignal): Promise<Map<string, Schedule>> {
  const r = await api.get<{ schedules: Schedule[] }>(`/schedules?next=${NEXT}`, signal);
  return new Map((r.schedules ?? []).map((s) => [s.template, s]));
}

/** The schedule's cell: what it is, whether it fires, when next, and what last went wrong. */
export function scheduleCell(s: Schedule | undefined): HTMLElement {
  if (!s) return h("span", { class: "muted" }, "not scheduled");
  const status = s.paused
    ? h("span", { class: "badge state-pending" }, "paused")
    : h("span", { class: "badge state-succeeded" }, "active");
  const times = s.nextFireTimes.length
    ? h("ul", { class: "fire-times", "aria-label": `Next fire times of ${s.template}`, style: "margin:0.2rem 0;padding-left:1.1rem" },
      ...s.nextFireTimes.map((t) => h("li", {}, h("time", { datetime: t, title: t }, when(t)))))
    : h("p", { class: "muted", style: "margin:0.2rem 0" }, s.paused ? "Paused: nothing fires." : "No time left to fire.");
  const err = s.state?.lastError
    ? h("p", { class: "notice error", style: "margin:0.2rem 0;padding:0.3rem 0.5rem" }, h("strong", {}, "Last error: "), s.state.lastError)
    : null;
  return h("div", { class: "schedule" },
    h("div", {}, h("code", {}, s.cron), " ", h("span", { class: "muted" }, `(${s.timezone}, ${s.concurrencyPolicy})`), " ", status),
    s.nextFireTimes.length ? h("span", { class: "muted" }, "Next, in this browser's time:") : null,
    times, err);
}

/** Pause or resume `name`'s schedule; the API's new view of it. */
export function setPaused(api: Api, name: string, paused: boolean): Promise<Schedule> {
  return api.post<Schedule>(`/templates/${seg(name)}/schedule/${paused ? "pause" : "resume"}?next=${NEXT}`);
}
