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
  return query;
}

const inRange = (value, low, high) => Number.isFinite(value) && value >= low && value <= high;

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
  const points = (query.get("points") ?? "")
    .split(";")
    .map((pair) => pair.split(",").map(Number))
    .filter((pair) => pair.length === 2 && inRange(pair[0], -180, 180) && inRange(pair[1], -90, 90))
    .slice(0, maxPoints);
  return { view, points };
}
