// The profile tool: draw a line on the map (each click a vertex; double-click, Enter or
// Finish ends it; Escape cancels), or type it; /profile's time × distance answer is drawn as
// a heatmap in the tiles' speed colours and, for one chosen date, as speed along the line.
// Exports are the API's own answers (CSV, NetCDF) and the heatmap as a PNG. The line and
// the date ride in the share link.
import uPlot from "uplot";
import { ApiError, getJson } from "./api.js";
import { drawHeatmap, profileLayout, speedScale } from "./heatmap.js";
import { readSharedProfile, shareAlso } from "./share.js";

export const MAX_VERTICES = 100; // the API takes 1,000
// the API samples at most 1,000 points; half of that leaves room for its geodesic length
// differing from ours, and keeps a long line's answer quick
export const MAX_SAMPLES = 500;
const MIN_SPACING_M = 120; // the cubes' pixel
const SNAP_PX = 4; // a click this near the last vertex adds none (a double-click's clicks)
const EARTH_RADIUS_M = 6371008.8;

const $ = (id) => document.getElementById(id);
const round = (value) => Math.round(value * 1e5) / 1e5;

/** Length of a lon/lat polyline in metres (great circles). */
export function lineLength(vertices) {
  let total = 0;
  for (let k = 1; k < vertices.length; k++) {
    const [[lon0, lat0], [lon1, lat1]] = [vertices[k - 1], vertices[k]].map((v) => v.map((d) => (d * Math.PI) / 180));
    const h = Math.sin((lat1 - lat0) / 2) ** 2 + Math.cos(lat0) * Math.cos(lat1) * Math.sin((lon1 - lon0) / 2) ** 2;
    total += 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
  }
  return total;
}

/** Metres between samples: the cubes' pixel, or more (in tens of metres) on long lines. */
export function sampleSpacing(vertices) {
  return Math.max(MIN_SPACING_M, Math.ceil(lineLength(vertices) / (MAX_SAMPLES - 1) / 10) * 10);
}

/** 'LON LAT, LON LAT, ...' (the API's form) → {vertices} or {error}. */
export function parseLine(text) {
  const vertices = [];
  for (const pair of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [lon, lat, extra] = pair.split(/\s+/).map(Number);
    if (extra !== undefined || !(Math.abs(lon) <= 180 && Math.abs(lat) <= 90)) {
      return { error: `"${pair.slice(0, 40)}" is not "LON LAT" in range` };
    }
    vertices.push([round(lon), round(lat)]);
  }
  if (vertices.length < 2) return { error: "a line needs at least two vertices" };
  if (vertices.length > MAX_VERTICES) return { error: `at most ${MAX_VERTICES} vertices, ${vertices.length} given` };
  return { vertices };
}

const lineText = (vertices) => vertices.map(([lon, lat]) => `${lon} ${lat}`).join(", ");

// -- the line on the map --------------------------------------------------------------------
const EMPTY = { type: "FeatureCollection", features: [] };

const LAYERS = ["profile-casing", "profile-line", "profile-rubber", "profile-vertices", "profile-hover"];

function addLayers(map) {
  map.addSource("profile", { type: "geojson", data: EMPTY });
  map.addLayer({
    id: "profile-casing", type: "line", source: "profile", filter: ["==", ["get", "kind"], "line"],
    paint: { "line-color": "#fff", "line-width": 5 },
  });
  map.addLayer({
    id: "profile-line", type: "line", source: "profile", filter: ["==", ["get", "kind"], "line"],
    paint: { "line-color": "#d62728", "line-width": 2.5 },
  });
  map.addLayer({
    id: "profile-rubber", type: "line", source: "profile", filter: ["==", ["get", "kind"], "rubber"],
    paint: { "line-color": "#d62728", "line-width": 1.5, "line-dasharray": [2, 2] },
  });
  map.addLayer({
    id: "profile-vertices", type: "circle", source: "profile", filter: ["==", ["get", "kind"], "vertex"],
    paint: { "circle-radius": 4, "circle-color": "#fff", "circle-stroke-color": "#d62728", "circle-stroke-width": 2 },
  });
  map.addLayer({
    id: "profile-hover", type: "circle", source: "profile", filter: ["==", ["get", "kind"], "hover"],
    paint: { "circle-radius": 6, "circle-color": "#ffd966", "circle-stroke-color": "#1d2733", "circle-stroke-width": 2 },
  });
}

const feature = (kind, type, coordinates) => ({ type: "Feature", properties: { kind }, geometry: { type, coordinates } });

/**
 * The profile tool on `map`. `say(text, kind)` shows a message, `filters()` the series
 * filters (URLSearchParams), `save()` puts the state in the page's URL. Returns its state
 * (for main.js and the browser tests): `drawing`, `line`, `answer`, `chosen`...
 */
export function initProfile(map, { say, filters, save }) {
  const shared = readSharedProfile(location.hash, MAX_VERTICES);
  const profile = {
    drawing: false, vertices: [], line: null, spacing: null, query: null, answer: null,
    chosen: -1, layout: null, heatmap: null, chart: null, scale: null, seq: 0,
    pending: shared, // what a shared link asked for, until it is drawn
  };
  let rubberTo = null;
  let hovered = null;
  let zoomBack = null;
  // the map was made a moment ago: its style loads after this. The layers are added when
  // first needed, not before: a source more makes isStyleLoaded() false while it loads
  let loaded = false;
  map.once("load", () => { loaded = true; });
  let layersReady = null;
  const ready = () => (layersReady ??= new Promise((resolve) => {
    const add = () => { addLayers(map); resolve(); };
    if (loaded) add();
    else map.once("load", add);
  }));

  async function showOnMap() {
    await ready();
    if (map.getLayersOrder().at(-1) !== LAYERS.at(-1)) LAYERS.forEach((id) => map.moveLayer(id)); // over the cubes
    const vertices = profile.drawing ? profile.vertices : (profile.line ?? []);
    const features = vertices.map((v) => feature("vertex", "Point", v));
    if (vertices.length > 1) features.push(feature("line", "LineString", vertices));
    if (profile.drawing && rubberTo && vertices.length) features.push(feature("rubber", "LineString", [vertices.at(-1), rubberTo]));
    if (hovered) features.push(feature("hover", "Point", hovered));
    map.getSource("profile").setData({ type: "FeatureCollection", features });
  }

  function status(text, kind = "") {
    const box = $("profile-status");
    box.textContent = text;
    box.className = kind;
  }

  function showControls() {
    $("profile-mode").setAttribute("aria-pressed", String(profile.drawing));
    $("profile").hidden = !profile.drawing && !profile.line;
    $("profile-finish").hidden = !profile.drawing;
    $("profile-cancel").hidden = !profile.drawing;
    $("profile-clear").hidden = profile.drawing || !profile.line;
    $("profile-result").hidden = !profile.answer?.mid_date.length;
  }

  // -- drawing --------------------------------------------------------------------------
  function startDrawing() {
    say("");
    profile.drawing = true;
    profile.vertices = [];
    rubberTo = null;
    clearTimeout(zoomBack);
    map.doubleClickZoom.disable();
    status(`Click the map to add vertices (up to ${MAX_VERTICES}); double-click, Enter or Finish ends the line, Escape cancels.`);
    showControls();
    showOnMap();
  }

  function stopDrawing() {
    profile.drawing = false;
    rubberTo = null;
    // the double-click that ends a line must not zoom: zooming comes back after it
    zoomBack = setTimeout(() => map.doubleClickZoom.enable(), 400);
  }

  function cancel() {
    stopDrawing();
    profile.vertices = [];
    status(profile.line ? "" : "Cancelled.");
    showControls();
    showOnMap();
  }

  function addVertex(lngLat, point) {
    const last = profile.vertices.at(-1);
    if (last && map.project(last).dist(point) < SNAP_PX) return;
    if (profile.vertices.length >= MAX_VERTICES) {
      finish();
      say(`At most ${MAX_VERTICES} vertices: the line ended there.`, "info");
      return;
    }
    profile.vertices.push([round(lngLat.lng), round(lngLat.lat)]);
    showOnMap();
  }

  function finish() {
    if (profile.vertices.length < 2) {
      status("A line needs at least two vertices: click the map again, or Escape to cancel.", "error");
      return;
    }
    const vertices = profile.vertices;
    stopDrawing();
    profile.vertices = [];
    setLine(vertices, null);
  }

  /** A new line (its date, a mid_date, if a link asked for one): drawn and asked for. */
  function setLine(vertices, date) {
    profile.line = vertices;
    profile.spacing = sampleSpacing(vertices);
    profile.answer = null;
    profile.chosen = -1;
    $("profile-form").elements.line.value = lineText(vertices);
    showControls();
    showOnMap();
    return load(date);
  }

  function clear() {
    profile.seq++;
    Object.assign(profile, { line: null, answer: null, chosen: -1, layout: null, heatmap: null, pending: null });
    profile.chart?.destroy();
    profile.chart = null;
    hovered = null;
    status("");
    showControls();
    showOnMap();
    save();
  }

  // -- the answer ---------------------------------------------------------------------------
  function query(format) {
    const asked = new URLSearchParams({ line: lineText(profile.line).replaceAll(", ", ","), spacing: String(profile.spacing) });
    for (const [key, value] of filters()) if (key !== "fit") asked.set(key, value);
    if (format) asked.set("format", format);
    return `profile?${asked}`;
  }

  async function load(date) {
    const seq = ++profile.seq;
    performance.mark("profile-asked"); // finished line to heatmap: benchmarks/dashboard_profile.py
    status("Loading the profile…");
    let answer;
    try {
      profile.scale ??= speedScale(await getJson("tiles/legend/speed"));
      answer = await getJson(query());
    } catch (err) {
      if (seq !== profile.seq) return;
      profile.answer = null;
      const text = err instanceof ApiError && err.status === 404
        ? "No datacube covers any point of this line: draw it across a cube outline."
        : `The profile could not be read: ${err.message}`;
      status(text, "error");
      say(text);
      showControls();
      save();
      return;
    }
    if (seq !== profile.seq) return; // a newer line or filter was asked for meanwhile
    profile.answer = answer;
    profile.query = query();
    profile.pending = null;
    const rows = answer.mid_date.length;
    if (!rows) {
      status("No observations along this line with these filters.", "info");
      say("No observations along this line with these filters.", "info");
    } else {
      const covered = answer.distance_m.length;
      const slots = Math.floor(lineLength(profile.line) / profile.spacing) + 1;
      const note = covered < slots ? ` (${slots - covered} samples outside every cube)` : "";
      status(`${rows} dates × ${covered} samples every ${profile.spacing} m${note}.`);
    }
    for (const [id, format] of [["profile-csv", "csv"], ["profile-netcdf", "netcdf"]]) $(id).href = query(format);
    profile.layout = rows ? profileLayout(answer, profile.spacing) : null;
    const byDate = date ? answer.mid_date.indexOf(date) : -1;
    choose(byDate >= 0 ? byDate : busiestRow(answer));
    showControls();
    draw();
    requestAnimationFrame(() => performance.mark("profile-drawn"));
  }

  /** The date with the most samples (the latest of those): the first one shown. */
  function busiestRow(answer) {
    const counts = answer.values.v?.map((row) => row.filter((v) => v != null).length) ?? [];
    let best = -1;
    counts.forEach((n, i) => {
      if (best < 0 || n > counts[best] || (n === counts[best] && answer.mid_date[i] > answer.mid_date[best])) best = i;
    });
    return best;
  }

  function choose(row) {
    profile.chosen = row;
    const slider = $("profile-date");
    if (profile.layout && row >= 0) {
      slider.max = String(profile.answer.mid_date.length - 1);
      slider.value = String(profile.layout.order.indexOf(row));
      $("profile-date-label").value = profile.answer.mid_date[row].slice(0, 10);
    }
    save();
  }

  function draw() {
    if (!profile.layout) return;
    profile.heatmap = drawHeatmap($("profile-heatmap"), profile.answer.values.v, profile.layout, profile.scale, profile.chosen);
    drawChart();
  }

  function drawChart() {
    const answer = profile.answer;
    const container = $("profile-chart");
    profile.chart?.destroy();
    container.replaceChildren();
    const km = answer.distance_m.map((d) => d / 1000);
    const half = profile.spacing / 2000;
    const speeds = answer.values.v[profile.chosen];
    const width = Math.max(container.clientWidth, 300);
    profile.chart = new uPlot({
      width,
      height: 220,
      // the heatmap's distances, so that the two read alike
      scales: { x: { time: false, range: [-half, (profile.layout.slots - 1) * profile.spacing / 1000 + half] } },
      axes: [{ label: "distance along the line [km]" }, { label: "v [m/yr]", size: 60 }],
      series: [
        { label: "km", value: (u, v) => (v == null ? "–" : `${v.toFixed(2)} km`) },
        {
          label: `v ${answer.mid_date[profile.chosen].slice(0, 10)}`, stroke: "#d62728", width: 1.5,
          points: { show: true, size: 5, fill: "#d62728" }, value: (u, v) => (v == null ? "–" : `${v} m/yr`),
        },
      ],
      legend: { show: false }, // the readout above says the value pointed at
      hooks: { setCursor: [(u) => u.cursor.left >= 0 && pointAt(profile.chosen, u.cursor.idx ?? -1)] },
    }, [km, speeds], container);
  }

  /** A sample pointed at (heatmap or chart): its place on the map. */
  function hover(column) {
    const next = column >= 0 ? [profile.answer.lon[column], profile.answer.lat[column]] : null;
    if (String(next) === String(hovered)) return;
    hovered = next;
    showOnMap();
  }

  /** Say the value of (row, column) under the heatmap, and show the sample on the map. */
  function pointAt(row, column) {
    const answer = profile.answer;
    const out = $("profile-hover");
    if (row < 0 || column < 0) {
      out.value = "";
      hover(-1);
      return;
    }
    const v = answer.values.v[row][column];
    const km = (answer.distance_m[column] / 1000).toFixed(2);
    out.value = `${answer.mid_date[row].slice(0, 10)}, ${km} km: ${v == null ? "no observation" : `${v} m/yr`}`;
    hover(column);
  }

  function readout(event) {
    if (!profile.heatmap) return;
    const canvas = event.target; // its pixels per CSS pixel: the device's, unless CSS shrank it
    const box = canvas.getBoundingClientRect();
    const [x, y] = [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
    return profile.heatmap.at(x, y);
  }

  // -- the page's controls ----------------------------------------------------------------
  $("profile-mode").addEventListener("click", () => (profile.drawing ? cancel() : startDrawing()));
  $("profile-finish").addEventListener("click", finish);
  $("profile-cancel").addEventListener("click", cancel);
  $("profile-clear").addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if (!profile.drawing) return;
    if (event.key === "Escape") cancel();
    else if (event.key === "Enter" && event.target === map.getCanvas()) finish();
  });
  map.on("click", (event) => profile.drawing && addVertex(event.lngLat, event.point));
  map.on("dblclick", (event) => {
    if (!profile.drawing) return;
    event.preventDefault();
    finish();
  });
  map.on("mousemove", (event) => {
    if (!profile.drawing || !profile.vertices.length) return;
    rubberTo = [event.lngLat.lng, event.lngLat.lat];
    showOnMap();
  });
  $("profile-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const { vertices, error } = parseLine(event.target.elements.line.value);
    if (error) {
      status(`The line: ${error}.`, "error");
      return;
    }
    if (profile.drawing) stopDrawing();
    const lons = vertices.map((v) => v[0]);
    const lats = vertices.map((v) => v[1]);
    map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]], { padding: 60, maxZoom: 14, duration: 0 });
    setLine(vertices, null);
  });
  const heatmap = $("profile-heatmap");
  heatmap.addEventListener("mousemove", (event) => {
    const cell = readout(event);
    pointAt(cell?.row ?? -1, cell?.column ?? -1);
  });
  heatmap.addEventListener("mouseleave", () => pointAt(-1, -1));
  $("profile-chart").addEventListener("mouseleave", () => pointAt(-1, -1));
  heatmap.addEventListener("click", (event) => {
    const cell = readout(event);
    if (cell && cell.row >= 0) {
      choose(cell.row);
      draw();
    }
  });
  $("profile-date").addEventListener("input", (event) => {
    if (!profile.layout) return;
    choose(profile.layout.order[Number(event.target.value)]);
    draw();
  });
  $("profile-png").addEventListener("click", () => {
    heatmap.toBlob((blob) => {
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = "glacierflow_profile.png";
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    });
  });
  let timer;
  $("filters").addEventListener("input", (event) => {
    if (!profile.line || !["min_dt", "max_dt", "start", "end"].includes(event.target.name)) return;
    clearTimeout(timer);
    timer = setTimeout(() => load(profile.answer?.mid_date[profile.chosen]), 300);
  });
  let width = 0;
  new ResizeObserver(([seen]) => {
    if (Math.abs(seen.contentRect.width - width) > 1 && profile.layout) draw();
    width = seen.contentRect.width;
  }).observe($("profile"));

  shareAlso(() => {
    const line = profile.line ?? profile.pending?.line;
    if (!line) return [];
    const date = profile.answer?.mid_date[profile.chosen] ?? profile.pending?.date;
    return [["profile", line.map(([lon, lat]) => `${lon},${lat}`).join(";")], ...(date ? [["profile_date", date]] : [])];
  });

  /** Draw the line a shared link named, if any (after the map's cubes are known). */
  profile.restore = () => (shared.line ? setLine(shared.line, shared.date) : Promise.resolve());
  return profile;
}
