// Requests to glacierflow's API, relative to the page (so a proxy prefix carries over), with
// one loading indicator for all of them and errors that say what the API said.

const indicator = () => document.getElementById("loading");
let pending = 0;

/** One more (+1) or one fewer (-1) thing being fetched, for the loading indicator. */
export function busy(delta) {
  pending += delta;
  indicator().hidden = pending === 0;
  document.body.setAttribute("aria-busy", String(pending > 0));
}

/** An answer that is not 2xx: its status and the API's own words (`detail`). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function describe(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = body.detail ?? body.description ?? detail;
    if (Array.isArray(detail)) {
      detail = detail.map((d) => `${(d.loc ?? []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
  } catch {
    // not JSON: the status text says it
  }
  return new ApiError(response.status, `${response.status}: ${detail}`);
}

/**
 * fetch(path) relative to the page, and `read` its answer (a Response's json, blob...);
 * the loading indicator shows until both are done. Throws ApiError.
 */
export async function request(path, options = {}, read = (response) => response) {
  busy(+1);
  try {
    let response;
    try {
      response = await fetch(new URL(path, document.baseURI), options);
    } catch (err) {
      throw new ApiError(0, `the server did not answer (${err.message}); is glacierflow serve running?`);
    }
    if (!response.ok) throw await describe(response);
    return await read(response);
  } finally {
    busy(-1);
  }
}

export function getJson(path, options) {
  return request(path, options, (response) => response.json());
}
