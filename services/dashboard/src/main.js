// glacierflow's dashboard: click the map (or type lon/lat) for a point's velocity history
// from /timeseries; filter it, compare up to 20 points, export what the chart shows.
import "./style.css";
import { ApiError, getJson, request } from "./api.js";
import { chartData, drawChart } from "./chart.js";
import { MAX_CSV_BYTES, parsePointsCsv } from "./csv.js";
import { addMarker, createMap, showCubes, showFootprints } from "./map.js";
import { initProfile } from "./profile.js";
import { readShared, shareParams } from "./share.js";
import { SpeedLayer } from "./speed.js";

const MAX_DT_DAYS = 546; // the slider's top: no upper limit on days between images
// 20 colours that stay apart and show on white
const PALETTE = [
  "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#0097a7", "#f032e6", "#9a6324",
  "#469990", "#800000", "#808000", "#000075", "#6b8e23", "#c71585", "#5f4b8b", "#b8860b",
  "#2f4f4f", "#ff1493", "#1e90ff", "#8b4513",
];

const $ = (id) => document.getElementById(id);
const state = { config: null, map: null, points: [], chart: null, nextId: 1, maxPoints: 20 };
window.glacierflow = state; // for the browser tests and the curious

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

// -- filters -------------------------------------------------------------------------------
function filters() {
  const form = $("filters").elements;
  let [low, high] = [Number(form.min_dt.value), Number(form.max_dt.value)];
  if (low > high) [low, high] = [high, low];
  form.dt_label.value = `${low}–${high >= MAX_DT_DAYS ? `${MAX_DT_DAYS}+` : high} days`;
  const query = new URLSearchParams();
  if (low > 1) query.set("min_dt", String(low));
  if (high < MAX_DT_DAYS) query.set("max_dt", String(high));
  if (form.start.value) query.set("start", `${form.start.value}T00:00:00Z`);
  if (form.end.value) query.set("end", `${form.end.value}T23:59:59Z`);
  if (form.fit.checked) query.set("fit", "true");
  return query;
}

function seriesUrl(point, format) {
  const query = new URLSearchParams({ lon: String(point.lon), lat: String(point.lat) });
  for (const [key, value] of filters()) query.set(key, value);
  if (format !== "json") query.set("format", format);
  return `timeseries?${query}`;
}

// -- points ----------------------------------------------------------------------------------
function freeColour() {
  const used = new Set(state.points.map((p) => p.colour));
  return PALETTE.find((c) => !used.has(c)) ?? PALETTE[0];
}

async function fetchSeries(point) {
  point.status = "loading";
  renderPoints();
  try {
    point.answer = await getJson(seriesUrl(point, "json"));
    point.status = point.answer.count ? "ok" : "empty";
  } catch (err) {
    point.answer = null;
    if (err instanceof ApiError && err.status === 404) {
      removePoint(point);
      say(`No datacube covers lon ${point.lon}, lat ${point.lat}: pick a point inside a cube outline.`);
      return;
    }
    point.status = "error";
    point.note = err.message;
    say(`The time series of ${point.label} could not be read: ${err.message}`);
  }
}

async function addPoint(lon, lat) {
  if (state.points.length >= state.maxPoints) {
    say(`At most ${state.maxPoints} points at once: remove one first.`);
    return;
  }
  say("");
  const id = state.nextId++;
  const point = { id, label: `P${id}`, lon: round(lon), lat: round(lat), colour: freeColour() };
  point.marker = addMarker(state.map, point.lon, point.lat, point.colour, point.label);
  state.points.push(point);
  performance.mark(`point-${id}-asked`); // click to chart: benchmarks/dashboard.py
  await fetchSeries(point);
  if (point.status === "empty") say(`No observations at ${point.label} with these filters.`, "info");
  render();
  requestAnimationFrame(() => performance.mark(`point-${id}-drawn`)); // the frame that shows it
}

function removePoint(point) {
  point.marker.remove();
  $("observation").hidden = true;
  state.points = state.points.filter((p) => p !== point);
  render();
}

async function refetchAll() {
  say("");
  $("observation").hidden = true;
  await Promise.all(state.points.map(fetchSeries));
  const empty = state.points.filter((p) => p.status === "empty");
  if (empty.length) say(`No observations match these filters at ${empty.map((p) => p.label).join(", ")}.`, "info");
  render();
}

/** The cube's item in STAC Browser (its id is the Zarr store's name without `.zarr`). */
function cubePage(name) {
  const collection = encodeURIComponent(state.config.cubes_collection);
  return `browser/collections/${collection}/items/${encodeURIComponent(name.replace(/\.zarr$/, ""))}`;
}

const round = (value) => Math.round(value * 1e5) / 1e5;

// -- drawing ---------------------------------------------------------------------------------
function link(text, href, download) {
  const a = document.createElement("a");
  a.textContent = text;
  a.href = href;
  if (download) a.download = download;
  return a;
}

function pointNote(point) {
  if (point.status === "loading") return "loading…";
  if (point.status === "error") return point.note;
  if (point.status === "empty") return "no observations here with these filters";
  const where = point.answer.returned_point;
  return `${point.answer.count} observations (pixel ${where.offset_m} m away)`;
}

function renderPoints() {
  const list = $("points");
  list.replaceChildren(
    ...state.points.map((point) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = point.colour;
      const name = document.createElement("strong");
      name.textContent = point.label;
      const where = document.createElement("span");
      where.textContent = `${point.lon}, ${point.lat}`;
      const note = document.createElement("span");
      note.className = `note ${point.status}`;
      note.textContent = pointNote(point);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${point.label}`);
      remove.addEventListener("click", () => removePoint(point));
      item.append(swatch, name, where, note);
      if (point.status === "ok") {
        const base = `${point.label}_${point.lon}_${point.lat}`;
        item.append(
          link("CSV", seriesUrl(point, "csv"), `${base}.csv`),
          link("NetCDF", seriesUrl(point, "netcdf"), `${base}.nc`),
          link("cube", cubePage(point.answer.cube.name)),
        );
      }
      item.append(remove);
      item.dataset.point = point.label;
      return item;
    }),
  );
  $("point-count").textContent = `(${state.points.length} of ${state.maxPoints})`;
  const none = !state.points.some((p) => p.status === "ok");
  $("export-csv").disabled = none;
  $("export-netcdf").disabled = none;
}

function render() {
  renderPoints();
  const form = $("filters").elements;
  const variable = form.variable.value;
  const built = chartData(state.points, variable, form.colour.value, form.fit.checked);
  const units = state.points.find((p) => p.answer)?.answer.units?.[variable];
  const empty = state.points.length
    ? "Nothing to draw: no observations at these points with these filters."
    : "Click the map inside a cube outline, or add a point by lon/lat.";
  state.chart = drawChart($("chart"), state.chart, built, variable, units, empty, pickObservation);
  renderKey(built);
  saveState();
  state.drawn = built.layers.filter((l) => l.kind === "observations").reduce((n, l) => n + l.values.length, 0);
}

/** One observation, chosen on the chart: its pair and the granule it came from. */
async function pickObservation(layer, time, value) {
  const box = $("observation");
  const point = layer.point;
  const mid = new Date(time * 1000).toISOString();
  const query = new URLSearchParams({
    lon: String(point.lon), lat: String(point.lat), start: mid, end: mid,
    variables: "granule_url,date_dt,mission_img1,satellite_img1",
  });
  try {
    const answer = await getJson(`timeseries?${query}`);
    const ts = answer.time_series;
    if (!answer.count) throw new Error("the observation is no longer in the cube");
    const url = ts.granule_url[0];
    const granule = link(url.split("/").pop(), url);
    box.replaceChildren(
      `${point.label} ${mid.slice(0, 10)}: ${$("filters").elements.variable.value} ${value} m/yr, ` +
        `${ts.mission_img1[0]}${ts.satellite_img1[0]}, ${ts.date_dt[0]} days; granule `,
      granule,
    );
    box.hidden = false;
  } catch (err) {
    say(`The observation's granule could not be read: ${err.message}`);
  }
}

/** The page's URL carries the state, so that it can be shared (and survives a reload). */
function saveState() {
  if (!state.map) return;
  const query = shareParams(state.map, state.points, $("filters").elements);
  state.speed?.share(query);
  history.replaceState(null, "", `#${query}`);
}

async function copyShareLink() {
  saveState();
  try {
    await navigator.clipboard.writeText(location.href);
    say("The link to this view is copied.", "info");
  } catch {
    say(`The link to this view: ${location.href}`, "info");
  }
}

/** The chart's colour key: the missions drawn (the point list shows the points' colours). */
function renderKey(built) {
  const seen = new Map();
  for (const layer of built.layers) {
    if (layer.kind === "observations") seen.set(layer.mission, layer.colour);
  }
  const byMission = $("filters").elements.colour.value === "mission";
  const entries = byMission ? [...seen] : [];
  if (built.layers.some((l) => l.kind !== "observations")) entries.push(["— seasonal fit, ○ annual values", null]);
  $("chart-key").replaceChildren(
    ...entries.map(([name, colour]) => {
      const entry = document.createElement("span");
      if (colour) {
        const dot = document.createElement("span");
        dot.className = "swatch";
        dot.style.background = colour;
        entry.append(dot);
      }
      entry.append(` ${name}`);
      return entry;
    }),
  );
}

// -- granule footprints of the view, on demand --------------------------------------------
async function footprints() {
  try {
    const found = await showFootprints(state.map, state.config.granules_collection);
    state.footprints = found;
    const more = found.more ? " (the first ones: zoom in for all)" : "";
    say(`${found.shown} granule footprint(s) in view${more}.`, "info");
  } catch (err) {
    say(`The granule footprints could not be read from the STAC API: ${err.message}`);
  }
}

// -- import of points from a CSV file -------------------------------------------------------
async function importCsv(input) {
  const [file] = input.files;
  input.value = ""; // the same file again is a new choice
  if (!file) return;
  if (file.size > MAX_CSV_BYTES) {
    say(`${file.name} is over ${MAX_CSV_BYTES / 1024} KiB: a points file holds up to ${state.maxPoints} rows.`);
    return;
  }
  const { points, skipped, error } = parsePointsCsv(await file.text());
  if (error) {
    say(`${file.name} cannot be read: ${error}.`);
    return;
  }
  const room = state.maxPoints - state.points.length;
  const notes = [];
  if (skipped.length) notes.push(`line(s) ${skipped.slice(0, 10).join(", ")}${skipped.length > 10 ? "…" : ""} are not lon,lat in range`);
  if (points.length > room) notes.push(`${points.length - room} point(s) left out: at most ${state.maxPoints} at once`);
  await Promise.all(points.slice(0, room).map(([lon, lat]) => addPoint(lon, lat)));
  if (notes.length) say(`From ${file.name}: ${notes.join("; ")}.`);
}

// -- export of all points: POST /timeseries, saved as the API sent it ------------------------
async function exportAll(format) {
  const points = state.points.filter((p) => p.status === "ok");
  const body = { points: points.map((p) => [p.lon, p.lat]), format };
  for (const [key, value] of filters()) {
    body[key] = key === "fit" ? true : key.endsWith("_dt") ? Number(value) : value;
  }
  try {
    const file = await request(
      "timeseries",
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) },
      (response) => response.blob(),
    );
    const url = URL.createObjectURL(file);
    link("", url, `glacierflow_${points.length}_points.${format === "csv" ? "csv" : "nc"}`).click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    say(`The export failed: ${err.message}`);
  }
}

// -- start -----------------------------------------------------------------------------------
function debounce(action, ms) {
  let timer;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, ms);
  };
}

async function start() {
  try {
    state.config = await getJson("dashboard/config.json");
  } catch (err) {
    say(`The dashboard's settings could not be read: ${err.message}`);
    return;
  }
  state.maxPoints = Math.min(20, state.config.max_points);
  const shared = readShared(location.hash, $("filters").elements, state.maxPoints);
  state.map = createMap($("map"), state.config, shared.view);
  state.map.on("moveend", saveState);
  state.speed = new SpeedLayer(state.map, $("speed"), {
    collection: state.config.mosaics_collection, say, changed: saveState,
  });
  state.map.on("click", (event) => state.profile?.drawing || addPoint(event.lngLat.lng, event.lngLat.lat));
  $("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target.elements;
    const [lon, lat] = [Number(form.lon.value), Number(form.lat.value)];
    if (event.submitter?.value === "add") addPoint(lon, lat);
    else state.map.flyTo({ center: [lon, lat], zoom: Math.max(state.map.getZoom(), 9) });
  });
  const filtersForm = $("filters");
  const refetch = debounce(refetchAll, 300);
  filtersForm.addEventListener("input", (event) => {
    if (["variable", "colour"].includes(event.target.name)) render();
    else refetch();
  });
  filtersForm.addEventListener("submit", (event) => event.preventDefault());
  $("export-csv").addEventListener("click", () => exportAll("csv"));
  $("export-netcdf").addEventListener("click", () => exportAll("netcdf"));
  $("share").addEventListener("click", copyShareLink);
  $("footprints").addEventListener("click", footprints);
  $("import-csv").addEventListener("change", (event) => importCsv(event.target));
  state.profile = initProfile(state.map, { say, filters, save: saveState }); // before any moveend
  let width = 0;
  const redraw = debounce(render, 150);
  new ResizeObserver(([entry]) => {
    if (Math.abs(entry.contentRect.width - width) > 1) redraw();
    width = entry.contentRect.width;
  }).observe($("chart"));
  filters();
  render();
  const speedRead = state.speed.load(); // the mosaics' years, meanwhile
  try {
    const count = await showCubes(state.map, state.config.cubes_collection, !shared.view);
    if (!count) say("The catalog has no datacubes yet: ingest granules (glacierflow cube ingest) to get time series.", "info");
  } catch (err) {
    say(`The cube outlines could not be read from the STAC API: ${err.message}`);
  }
  await speedRead;
  state.speed.apply(); // its tiles once the outlines are read: usable first, drawn under them
  await Promise.all(shared.points.map(([lon, lat]) => addPoint(lon, lat)));
  await state.profile.restore();
  state.ready = true;
  performance.mark("dashboard-ready");
}

start();
