// The profile's heatmap: /profile's speed along a line, distance across and time down, in
// the map tiles' speed colours (the legend at /tiles/legend/speed: log10, 1..10,000 m/yr),
// with its axes and colour bar, on a canvas. Rows are placed by date, not by index, so that
// a season or a surge shows at its time and a gap in the record shows as a gap.

export const NO_DATA = [214, 219, 224]; // a cell with no observation (a grey the scale lacks)
const HALF_BAND_S = 15 * 86400; // a layer covers at most ±15 days around its mid_date
const MARGIN = { left: 84, right: 72, top: 8, bottom: 38 }; // CSS px
const FONT = "12px system-ui, sans-serif";

/** The legend's 256 colours and its log10 range, as the tiles draw speed. */
export function speedScale(legend) {
  const colours = legend.stops.map((stop) => [1, 3, 5].map((at) => parseInt(stop.color.slice(at, at + 2), 16)));
  const [low, high] = legend.range.map(Math.log10);
  return { colours, low, high, ticks: legend.ticks };
}

/** The colour entry of log10(speed), as titiler picks it (clipped, rescaled, truncated). */
function entry(scale, logSpeed) {
  const clipped = Math.min(Math.max(logSpeed, scale.low), scale.high);
  return Math.floor(((clipped - scale.low) / (scale.high - scale.low)) * (scale.colours.length - 1));
}

export const seconds = (text) => Date.parse(text.endsWith("Z") ? text : `${text}Z`) / 1000;

/**
 * Where each layer and sample goes: layers sorted by date, each covering the time halfway
 * to its neighbours (at most HALF_BAND_S each side); samples in slots of `spacing` metres
 * from the line's start (a part of the line outside every cube is a run of empty slots).
 */
export function profileLayout(answer, spacing) {
  const times = answer.mid_date.map(seconds);
  const order = times.map((_, i) => i).sort((a, b) => times[a] - times[b]);
  const bands = new Array(times.length);
  order.forEach((i, k) => {
    const before = k ? (times[i] - times[order[k - 1]]) / 2 : HALF_BAND_S;
    const after = k < order.length - 1 ? (times[order[k + 1]] - times[i]) / 2 : HALF_BAND_S;
    bands[i] = [times[i] - Math.min(before, HALF_BAND_S), times[i] + Math.min(after, HALF_BAND_S)];
  });
  const slotOf = answer.distance_m.map((d) => Math.round(d / spacing));
  const slots = slotOf.reduce((most, slot) => Math.max(most, slot), 0) + 1;
  const columnOf = new Array(slots).fill(-1);
  slotOf.forEach((slot, j) => { columnOf[slot] = j; });
  // (no spread of the bands into Math.min: a long cube has more layers than call arguments)
  const start = bands.reduce((low, band) => Math.min(low, band[0]), Infinity);
  const end = bands.reduce((high, band) => Math.max(high, band[1]), -Infinity);
  return { times, order, bands, slotOf, slots, columnOf, start, end, spacing };
}

/**
 * Mean log10(speed) per (display row, slot): each layer spread over the rows its band
 * covers (at least the row of its date). Returns {sums, counts} of height × slots.
 */
export function accumulate(values, layout, height) {
  const { slots, slotOf, bands, times, start, end } = layout;
  const sums = new Float64Array(height * slots);
  const counts = new Uint32Array(height * slots);
  const rowAt = (t) => ((t - start) / (end - start)) * height;
  values.forEach((row, i) => {
    const own = Math.min(height - 1, Math.floor(rowAt(times[i])));
    const first = Math.min(own, Math.max(0, Math.round(rowAt(bands[i][0]))));
    const last = Math.max(own, Math.min(height - 1, Math.round(rowAt(bands[i][1])) - 1));
    for (let j = 0; j < row.length; j++) {
      const v = row[j];
      if (!(v > 0)) continue;
      const logV = Math.log10(v);
      for (let r = first; r <= last; r++) {
        sums[r * slots + slotOf[j]] += logV;
        counts[r * slots + slotOf[j]] += 1;
      }
    }
  });
  return { sums, counts };
}

function niceStep(span, most) {
  const raw = span / most;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw);
}

const day = (t) => new Date(t * 1000).toISOString().slice(0, 10);

/**
 * Draw the heatmap of `values` (rows of the answer's layers) into `canvas`, sized to its
 * CSS box; `chosen` (a layer index) is marked in the margins. Returns the geometry: the
 * plot box and `at(x, y)` (canvas px → {row, column}, either -1 where none) and
 * `centre(row, column)` (the canvas px in the middle of a cell).
 */
export function drawHeatmap(canvas, values, layout, scale, chosen) {
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = Math.max(canvas.clientWidth, 360);
  const cssHeight = canvas.clientHeight || 320;
  canvas.width = Math.round(cssWidth * ratio);
  canvas.height = Math.round(cssHeight * ratio);
  const plot = {
    left: Math.round(MARGIN.left * ratio),
    top: Math.round(MARGIN.top * ratio),
    width: Math.round((cssWidth - MARGIN.left - MARGIN.right) * ratio),
    height: Math.round((cssHeight - MARGIN.top - MARGIN.bottom) * ratio),
  };
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);

  const { slots, start, end } = layout;
  const { sums, counts } = accumulate(values, layout, plot.height);
  const image = ctx.createImageData(plot.width, plot.height);
  const pixels = image.data;
  for (let x = 0; x < plot.width; x++) {
    const slot = Math.min(slots - 1, Math.floor((x / plot.width) * slots));
    for (let y = 0; y < plot.height; y++) {
      const cell = y * slots + slot;
      const colour = counts[cell] ? scale.colours[entry(scale, sums[cell] / counts[cell])] : NO_DATA;
      const at = (y * plot.width + x) * 4;
      pixels[at] = colour[0];
      pixels[at + 1] = colour[1];
      pixels[at + 2] = colour[2];
      pixels[at + 3] = 255;
    }
  }
  ctx.putImageData(image, plot.left, plot.top);

  const xOfSlot = (slot) => plot.left + ((slot + 0.5) / slots) * plot.width;
  const yOfTime = (t) => plot.top + ((t - start) / (end - start)) * plot.height;
  ctx.font = FONT.replace(/^\d+/, (size) => String(Number(size) * ratio));
  ctx.fillStyle = "#1d2733";
  ctx.strokeStyle = "#1d2733";
  ctx.lineWidth = ratio;
  ctx.strokeRect(plot.left - 0.5, plot.top - 0.5, plot.width + 1, plot.height + 1);

  // distance (km) along the bottom
  const lengthKm = ((slots - 1) * layout.spacing) / 1000;
  const stepKm = niceStep(Math.max(lengthKm, 0.001), 6);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let km = 0; km <= lengthKm + 1e-9; km += stepKm) {
    const x = xOfSlot((km * 1000) / layout.spacing);
    ctx.fillRect(x, plot.top + plot.height, ratio, 4 * ratio);
    ctx.fillText(String(Number(km.toFixed(3))), x, plot.top + plot.height + 6 * ratio);
  }
  ctx.fillText("distance along the line [km]", plot.left + plot.width / 2, plot.top + plot.height + 21 * ratio);

  // dates down the left
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const ticks = Math.max(2, Math.min(7, Math.floor(plot.height / (40 * ratio))));
  for (let k = 0; k <= ticks; k++) {
    const t = start + ((end - start) * k) / ticks;
    const y = yOfTime(t);
    ctx.fillRect(plot.left - 4 * ratio, y, 4 * ratio, ratio);
    ctx.fillText(day(t), plot.left - 6 * ratio, Math.min(Math.max(y, plot.top + 6 * ratio), plot.top + plot.height - 6 * ratio));
  }

  // the chosen date: a mark in each margin, none over the data
  if (chosen >= 0) {
    const y = yOfTime(layout.times[chosen]);
    for (const [edge, dir] of [[plot.left, -1], [plot.left + plot.width, 1]]) {
      ctx.beginPath();
      ctx.moveTo(edge + dir, y);
      ctx.lineTo(edge + dir * 7 * ratio, y - 4 * ratio);
      ctx.lineTo(edge + dir * 7 * ratio, y + 4 * ratio);
      ctx.fillStyle = "#d62728";
      ctx.fill();
    }
    ctx.fillStyle = "#1d2733";
  }

  // the colour bar on the right, with the legend's ticks (m/yr)
  const bar = { left: plot.left + plot.width + 12 * ratio, width: 12 * ratio };
  for (let y = 0; y < plot.height; y++) {
    const colour = scale.colours[Math.floor((1 - y / plot.height) * (scale.colours.length - 1))];
    ctx.fillStyle = `rgb(${colour.join(",")})`;
    ctx.fillRect(bar.left, plot.top + y, bar.width, 1);
  }
  ctx.fillStyle = "#1d2733";
  ctx.textAlign = "left";
  for (const tick of scale.ticks) {
    const y = plot.top + (1 - (Math.log10(tick.value) - scale.low) / (scale.high - scale.low)) * plot.height;
    ctx.fillRect(bar.left + bar.width, y, 3 * ratio, ratio);
    ctx.fillText(tick.label, bar.left + bar.width + 5 * ratio, Math.min(Math.max(y, plot.top + 6 * ratio), plot.top + plot.height - 6 * ratio));
  }
  ctx.save();
  ctx.translate(canvas.width - 4 * ratio, plot.top + plot.height / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText("speed [m/yr]", 0, 0);
  ctx.restore();

  const at = (x, y) => {
    if (x < plot.left || x >= plot.left + plot.width || y < plot.top || y >= plot.top + plot.height) {
      return { row: -1, column: -1 };
    }
    const slot = Math.min(slots - 1, Math.floor(((x - plot.left) / plot.width) * slots));
    const t = start + ((y - plot.top) / plot.height) * (end - start);
    let row = -1;
    let nearest = Infinity;
    layout.bands.forEach(([a, b], i) => {
      const off = Math.abs(layout.times[i] - t);
      if (t >= a && t <= b && off < nearest) [row, nearest] = [i, off];
    });
    return { row, column: layout.columnOf[slot] };
  };
  const centre = (row, column) => [
    Math.floor(xOfSlot(layout.slotOf[column])),
    Math.floor(yOfTime((layout.bands[row][0] + layout.bands[row][1]) / 2)),
  ];
  return { plot, at, centre };
}
