// The share link: the view, the points and the filters in the page's URL (#...), kept up to
// date as they change, and read back when a page opens with one. What a link carries is
// checked like typed input: out-of-range values are left out, never trusted.

const FORM_FIELDS = ["variable", "colour", "min_dt", "max_dt", "start", "end"];
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** The state as URL parameters: map=zoom/lat/lon, points=lon,lat;..., the filters. */
export function shareParams(map, points, form) {
  const query = new URLSearchParams();
  const centre = map.getCenter();
  query.set("map", `${map.getZoom().toFixed(2)}/${centre.lat.toFixed(5)}/${centre.lng.toFixed(5)}`);
  if (points.length) query.set("points", points.map((p) => `${p.lon},${p.lat}`).join(";"));
  for (const name of FORM_FIELDS) {
    if (form[name].value) query.set(name, form[name].value);
  }
  query.set("fit", form.fit.checked ? "1" : "0");
  for (const params of extras) for (const [name, value] of params()) query.set(name, value);
  return query;
}

const extras = [];

/** Another tool's part of the link: `params()` → [[name, value], ...], read back by itself. */
export function shareAlso(params) {
  extras.push(params);
}

const inRange = (value, low, high) => Number.isFinite(value) && value >= low && value <= high;

/** "lon,lat;lon,lat;..." → the [lon, lat] pairs in range (the others left out). */
const lonLats = (text) => (text ?? "")
  .split(";")
  .map((pair) => pair.split(",").map(Number))
  .filter((pair) => pair.length === 2 && inRange(pair[0], -180, 180) && inRange(pair[1], -90, 90));

/**
 * Apply a shared URL's filters to the form; returns the view ({zoom, center} or null) and
 * the points ([lon, lat], at most `maxPoints`) it names.
 */
export function readShared(hash, form, maxPoints) {
  const query = new URLSearchParams(hash.replace(/^#/, ""));
  for (const name of ["variable", "colour"]) {
    const value = query.get(name);
    if ([...form[name].options].some((option) => option.value === value)) form[name].value = value;
  }
  for (const name of ["min_dt", "max_dt"]) {
    const value = Number(query.get(name));
    if (query.has(name) && inRange(value, Number(form[name].min), Number(form[name].max))) form[name].value = String(value);
  }
  for (const name of ["start", "end"]) {
    if (DATE.test(query.get(name) ?? "")) form[name].value = query.get(name);
  }
  if (query.has("fit")) form.fit.checked = query.get("fit") !== "0";
  const [zoom, lat, lon] = (query.get("map") ?? "").split("/").map(Number);
  const view = inRange(zoom, 0, 24) && inRange(lat, -90, 90) && inRange(lon, -180, 180)
    ? { zoom, center: [lon, lat] }
    : null;
  const points = lonLats(query.get("points")).slice(0, maxPoints);
  return { view, points };
}

const MID_DATE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$/;

/**
 * The profile a shared URL names: `line` ([lon, lat] vertices in range, at most
 * `maxVertices`; null unless two are left) and `date` (a mid_date, or null).
 */
export function readSharedProfile(hash, maxVertices) {
  const query = new URLSearchParams(hash.replace(/^#/, ""));
  const vertices = lonLats(query.get("profile")).slice(0, maxVertices);
  const date = query.get("profile_date") ?? "";
  return { line: vertices.length >= 2 ? vertices : null, date: MID_DATE.test(date) ? date : null };
}
