// Routes of the page (history API, so every view has its own URL and survives a reload;
// the api service answers each of these paths with the same index.html).

export type Route =
  | { name: "runs" }
  | { name: "submit" }
  | { name: "run"; dagId: string }
  | { name: "metrics"; dagName: string }
  | { name: "templates" }
  | { name: "notfound"; path: string };

function decode(part: string): string | null {
  try {
    return decodeURIComponent(part);
  } catch {
    return null;
  }
}

/** The route of a location's pathname (query and hash are the view's own business). */
export function match(pathname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/") return { name: "runs" };
  if (path === "/submit") return { name: "submit" };
  if (path === "/templates") return { name: "templates" };
  const m = /^\/(runs|dags)\/([^/]+)$/.exec(path);
  const value = m ? decode(m[2]) : null;
  if (m && value) return m[1] === "runs" ? { name: "run", dagId: value } : { name: "metrics", dagName: value };
  return { name: "notfound", path: pathname };
}

export const runPath = (dagId: string): string => `/runs/${encodeURIComponent(dagId)}`;
export const metricsPath = (dagName: string): string => `/dags/${encodeURIComponent(dagName)}`;
