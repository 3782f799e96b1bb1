// The console's client of the Fossil HTTP API: every request carries the
// tab's token (sessionStorage only) as a bearer header; answers other than
// 2xx become ApiError with the problem document.

const TOKEN_KEY = "fossil.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// ApiError is a failed answer; problem holds its problem document.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {status, title: `HTTP ${status}`};
  }
}

// AuthError is a 401: the server wants a (better) token.
export class AuthError extends ApiError {}

function headers(extra) {
  const hd = new Headers(extra || {});
  const token = getToken();
  if (token) hd.set("Authorization", "Bearer " + token);
  return hd;
}

async function failure(res) {
  let problem = null;
  try {
    problem = await res.json();
  } catch {
    problem = {status: res.status, title: res.statusText};
  }
  if (res.status === 401) return new AuthError(res.status, problem);
  return new ApiError(res.status, problem);
}

// request sends one API request and returns the Response once it is 2xx.
export async function request(path, {method = "GET", body, headers: extra, signal} = {}) {
  const res = await fetch(path, {method, body, headers: headers(extra), signal, cache: "no-store"});
  if (!res.ok) throw await failure(res);
  return res;
}

// getJSON fetches a JSON document.
export async function getJSON(path, opts) {
  const res = await request(path, opts);
  return res.json();
}

// getText fetches a text document.
export async function getText(path, opts) {
  const res = await request(path, opts);
  return res.text();
}

// readSSE reads a server-sent event stream with fetch, so that the token
// travels in the Authorization header (never in the URL, where it would
// reach access logs) and the cursor in Last-Event-Id. onEvent gets (id,
// data) for each frame; it resolves when the stream ends or signal aborts.
export async function readSSE(path, {after, signal, onEvent, onOpen}) {
  const extra = {"Accept": "text/event-stream"};
  if (after !== undefined && after !== null) extra["Last-Event-Id"] = String(after);
  const res = await fetch(path, {headers: headers(extra), signal, cache: "no-store"});
  if (!res.ok) throw await failure(res);
  if (onOpen) onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let id = "";
  let data = [];
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (data.length) onEvent(id, data.join("\n"));
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (name === "id") id = val;
        else if (name === "data") data.push(val);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// nextLink returns the rel="next" target of a Link header, or null.
export function nextLink(res) {
  const link = res.headers.get("Link");
  if (!link) return null;
  const m = /<([^>]*)>\s*;\s*rel="next"/.exec(link);
  return m ? m[1] : null;
}
