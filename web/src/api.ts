// The one client of the Helios HTTP API that every view uses.
//
// A bearer token is kept in this browser's localStorage and sent on every call (the live
// feed included: EventSource cannot send headers, so views read the feed with `raw()`).
// A 401 or 403 is not a dead end: the Api forgets a refused token and dispatches
// "token-needed", and the page shows its token form; saving a token dispatches "token".

export const TOKEN_KEY = "helios.token";

/** One located problem of a rejected document: `tasks[1].depends_on[0]` and why. */
export interface FieldError {
  field: string;
  reason: string;
}

/** An RFC 9457 problem+json answer (or a non-JSON error answer, in the same shape). */
export class ApiError extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly errors: FieldError[];

  constructor(status: number, title: string, detail = "", errors: FieldError[] = []) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = errors;
  }

  /** True when the answer asks for a (different) token. */
  get needsToken(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/** The API could not be reached at all (network down, server stopped). */
export class Unreachable extends Error {
  constructor(readonly path: string, cause: unknown) {
    super(`the Helios API is unreachable (${String(cause)})`);
    this.name = "Unreachable";
  }
}

export interface TokenNeededDetail {
  status: number;
  /** A token was sent and refused (rather than none sent). */
  refused: boolean;
  detail: string;
}

function fieldErrors(value: unknown): FieldError[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((e): e is Record<string, unknown> => typeof e === "object" && e !== null)
    .map((e) => ({ field: String(e.field ?? ""), reason: String(e.reason ?? "") }));
}

/** The error carried by a failed response (problem+json or anything else). */
export async function errorOf(res: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    const text = await res.text();
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    body = {};
  }
  const title = typeof body.title === "string" ? body.title : res.statusText || `HTTP ${res.status}`;
  const detail = typeof body.detail === "string" ? body.detail : "";
  return new ApiError(res.status, title, detail, fieldErrors(body.errors));
}

export class Api extends EventTarget {
  readonly base: string;
  private readonly storage: Storage | null;

  /** `base` is the origin (and path prefix) in front of `/api/v1`; "" for the page's own. */
  constructor(base = "", storage: Storage | null = globalThis.localStorage ?? null) {
    super();
    this.base = base.replace(/\/+$/, "");
    this.storage = storage;
  }

  get token(): string | null {
    return this.storage?.getItem(TOKEN_KEY) ?? null;
  }

  setToken(token: string | null): void {
    const t = token?.trim();
    if (t) this.storage?.setItem(TOKEN_KEY, t);
    else this.storage?.removeItem(TOKEN_KEY);
    this.dispatchEvent(new Event("token"));
  }

  url(path: string): string {
    return this.base + (path.startsWith("/api/") ? path : `/api/v1${path.startsWith("/") ? "" : "/"}${path}`);
  }

  /**
   * The raw response of `path` (`/dags/...` is read as `/api/v1/dags/...`), with the token.
   * Throws Unreachable when nothing answers; a 401/403 also dispatches "token-needed".
   */
  async raw(path: string, init: RequestInit = {}): Promise<Response> {
    const token = this.token;
    const headers = new Headers(init.headers);
    if (token && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${token}`);
    if (!headers.has("Accept")) headers.set("Accept", "application/json");
    let res: Response;
    try {
      res = await fetch(this.url(path), { ...init, headers });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new Unreachable(path, err);
    }
    if (res.status === 401 || res.status === 403) {
      // A refused token is forgotten so the next call does not repeat it (403: the token
      // lacks a scope; it is kept, a write token may be pasted over it).
      if (res.status === 401 && token) this.storage?.removeItem(TOKEN_KEY);
      const detail = await res.clone().text().catch(() => "");
      this.dispatchEvent(new CustomEvent<TokenNeededDetail>("token-needed", {
        detail: { status: res.status, refused: token !== null, detail },
      }));
    }
    return res;
  }

  /** The JSON body of a successful answer; an ApiError otherwise. */
  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await this.raw(path, init);
    if (!res.ok) throw await errorOf(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.json<T>(path, { signal });
  }

  post<T>(path: string, body?: string, contentType = "application/json"): Promise<T> {
    const headers: Record<string, string> = body === undefined ? {} : { "Content-Type": contentType };
    return this.json<T>(path, { method: "POST", body, headers });
  }
}

/** `encodeURIComponent` for one path segment. */
export const seg = encodeURIComponent;
