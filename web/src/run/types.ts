// The shapes the run view reads: `GET /api/v1/dags/{dagId}` (services/api/runs.py) and the
// SSE feed's task and run events (helios/messages.py TaskEvent, RunEvent). Fields the
// server may add later are ignored; fields it may leave out are optional.

export interface Timings {
  queuedAt?: number | null;
  scheduledAt?: number | null;
  startedAt?: number | null;
  finishedAt?: number | null;
}

export interface CacheStats {
  hits?: number;
  misses?: number;
  bytesSaved?: number;
  bytesFetched?: number;
}

export interface TaskStatus {
  name: string;
  state: string;
  attempts: number;
  lostAttempts?: number;
  dependsOn?: string[];
  node?: string | null;
  exitCode?: number | null;
  reason?: string | null;
  message?: string | null;
  memoized?: boolean;
  memoReason?: string | null;
  timings?: Timings;
  cache?: CacheStats;
  /** Instances of a forEach task: `mapOf` names the task, `index` the item. */
  mapOf?: string;
  index?: number;
  /** An exit handler (`onExit`): runs after every other task ended. */
  onExit?: boolean;
  /** The JSON value the task wrote to /artifacts/.result (for `when:` conditions). */
  result?: unknown;
}

export interface RunStatus {
  dagId: string;
  dagName: string;
  status: string;
  useCache?: boolean;
  generation?: number;
  submittedAt?: number | null;
  startedAt?: number | null;
  endedAt?: number | null;
  durationMs?: number | null;
  tasks: TaskStatus[];
}

export interface TaskEventData {
  type: "task";
  dagId: string;
  task: string;
  state: string;
  attempt: number;
  at: number;
  node?: string | null;
  exitCode?: number | null;
  reason?: string | null;
  message?: string | null;
  memoized?: boolean;
  useCache?: boolean;
  inputs?: number;
  cache?: CacheStats;
  timings?: Timings;
  generation?: number;
  lostAttempts?: number;
}

export interface RunEventData {
  type: "run";
  dagId: string;
  state: string;
  at: number;
  startedAt?: number;
  endedAt?: number | null;
  taskCount?: number;
  generation?: number;
}

export type FeedEvent = TaskEventData | RunEventData;

export interface LogPage {
  offset: number;
  next: number;
  lines: string[];
  truncated?: boolean;
  cuts?: { attempt: number; keptBytes: number; fullLog: string }[];
}

/** Task states the view knows how to colour; anything else is shown as "unknown". */
export const TASK_STATES = [
  "PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "UPSTREAM_FAILED", "CANCELLED", "SKIPPED",
] as const;

export const TERMINAL = new Set(["SUCCEEDED", "FAILED", "UPSTREAM_FAILED", "CANCELLED", "SKIPPED"]);
