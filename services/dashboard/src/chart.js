// The time-series chart (uPlot): observations with error bars, one series per point and
// mission group; the annual values and seasonal curve of the fit as lines.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

// ITS_LIVE's sensor groups, each its colour (colour-blind-safe palette)
const MISSIONS = [
  { key: "L4_L5", label: "Landsat 4/5", colour: "#999933", test: (m, s) => m === "L" && (s === "4" || s === "5") },
  { key: "L7", label: "Landsat 7", colour: "#882255", test: (m, s) => m === "L" && s === "7" },
  { key: "L8_L9", label: "Landsat 8/9", colour: "#0072b2", test: (m) => m === "L" },
  { key: "S1", label: "Sentinel-1", colour: "#009e73", test: (m, s) => m === "S" && s.startsWith("1") },
  { key: "S2", label: "Sentinel-2", colour: "#d55e00", test: (m) => m === "S" },
  { key: "other", label: "other", colour: "#555555", test: () => true },
];

const ERROR_OF = { v: "v_error", vx: "vx_error", vy: "vy_error", v_error: null };

const seconds = (text) => Date.parse(text.endsWith("Z") || text.length <= 10 ? text : `${text}Z`) / 1000;

/** Index of each observation's mission group. */
function missionGroups(series) {
  const missions = series.mission_img1 ?? [];
  const satellites = series.satellite_img1 ?? [];
  return missions.map((m, i) => MISSIONS.findIndex((g) => g.test(m, String(satellites[i] ?? ""))));
}

/**
 * uPlot's aligned data for the points' answers: x = every date any series has; each
 * observation series (point × mission group) with its error bars alongside.
 */
export function chartData(points, variable, colourBy, withFit) {
  const layers = []; // {label, colour, kind, times, values, errors}
  const error = ERROR_OF[variable];
  for (const point of points) {
    const answer = point.answer;
    if (!answer || !answer.count) continue;
    const ts = answer.time_series;
    const times = ts.mid_date.map(seconds);
    const groups = missionGroups(ts);
    for (let g = 0; g < MISSIONS.length; g++) {
      const keep = groups.map((k, i) => (k === g ? i : -1)).filter((i) => i >= 0);
      if (!keep.length) continue;
      layers.push({
        label: `${point.label} ${MISSIONS[g].label}`,
        mission: MISSIONS[g].label,
        colour: colourBy === "point" ? point.colour : MISSIONS[g].colour,
        kind: "observations",
        point,
        times: keep.map((i) => times[i]),
        values: keep.map((i) => ts[variable][i]),
        errors: error ? keep.map((i) => ts[error][i]) : null,
      });
    }
    const fit = answer.fit;
    if (withFit && fit && fit.curve[variable]) {
      layers.push({
        label: `${point.label} seasonal fit`,
        colour: point.colour,
        kind: "curve",
        times: fit.curve.time.map(seconds),
        values: fit.curve[variable],
      });
      layers.push({
        label: `${point.label} annual ${variable}`,
        colour: point.colour,
        kind: "annual",
        times: fit.annual.year.map((y) => Date.UTC(y, 6, 2) / 1000),
        values: fit.annual[variable],
      });
    }
  }
  const xs = [...new Set(layers.flatMap((layer) => layer.times))].sort((a, b) => a - b);
  const column = new Map(xs.map((x, i) => [x, i]));
  const align = (layer, values) => {
    const out = new Array(xs.length).fill(null);
    layer.times.forEach((t, i) => { out[column.get(t)] = values[i]; });
    return out;
  };
  const data = [xs, ...layers.map((layer) => align(layer, layer.values))];
  const errors = layers.map((layer) => (layer.errors ? align(layer, layer.errors) : null));
  return { layers, data, errors };
}

/** Error bars: a vertical line ± error through each observation, in the series' colour. */
function errorBars(errors, colours) {
  return {
    hooks: {
      drawSeries: [
        (u, index) => {
          const bars = errors[index - 1];
          if (!bars || !u.series[index].show) return;
          const { ctx } = u;
          const xs = u.data[0];
          const ys = u.data[index];
          ctx.save();
          ctx.beginPath();
          ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
          ctx.clip();
          ctx.strokeStyle = colours[index - 1];
          ctx.globalAlpha = 0.5;
          ctx.lineWidth = uPlot.pxRatio;
          ctx.beginPath();
          for (let i = 0; i < xs.length; i++) {
            if (ys[i] == null || bars[i] == null) continue;
            const x = Math.round(u.valToPos(xs[i], "x", true));
            ctx.moveTo(x, u.valToPos(ys[i] - bars[i], "y", true));
            ctx.lineTo(x, u.valToPos(ys[i] + bars[i], "y", true));
          }
          ctx.stroke();
          ctx.restore();
        },
      ],
    },
  };
}

const PICK_PX = 12; // how near a click must be to an observation to choose it

/** A click on the chart chooses the nearest observation: onPick(layer, time in seconds). */
function picking(layers, onPick) {
  return {
    hooks: {
      ready: [
        (u) => {
          u.over.addEventListener("click", () => {
            const { left, top } = u.cursor;
            let best = null;
            u.series.forEach((series, i) => {
              const at = u.cursor.idxs?.[i];
              if (!i || series.kind !== "observations" || !series.show || at == null) return;
              const y = u.data[i][at];
              if (y == null) return;
              const distance = Math.hypot(u.valToPos(u.data[0][at], "x") - left, u.valToPos(y, "y") - top);
              if (distance <= PICK_PX && (!best || distance < best.distance)) best = { distance, i, at };
            });
            if (best) onPick(layers[best.i - 1], u.data[0][best.at], u.data[best.i][best.at]);
          });
        },
      ],
    },
  };
}

function seriesOptions(layer) {
  const common = { kind: layer.kind, label: layer.label, stroke: layer.colour };
  if (layer.kind === "observations") {
    return { ...common, paths: () => null, points: { show: true, size: 5, fill: layer.colour, stroke: layer.colour } };
  }
  if (layer.kind === "annual") {
    return {
      ...common, width: 2, dash: [6, 4], spanGaps: true,
      points: { show: true, size: 9, fill: "#fff", stroke: layer.colour, width: 2 },
    };
  }
  return { ...common, width: 1.5, spanGaps: true, points: { show: false } };
}

/** Draw (or redraw) the chart in `container`; returns the uPlot instance, or null if empty. */
export function drawChart(container, previous, built, variable, units, emptyText, onPick) {
  previous?.destroy();
  container.replaceChildren();
  if (!built.layers.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = emptyText;
    container.append(empty);
    return null;
  }
  const width = Math.max(container.clientWidth, 300);
  const options = {
    width,
    height: Math.round(Math.min(Math.max(width * 0.55, 260), 420)),
    scales: { x: { time: true } },
    axes: [{}, { label: `${variable} [${units ?? "m/yr"}]`, size: 60 }],
    series: [{ label: "date", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 10)) },
      ...built.layers.map(seriesOptions)],
    plugins: [
      errorBars(built.errors, built.layers.map((layer) => layer.colour)),
      picking(built.layers, onPick),
    ],
    legend: { show: false }, // the key above and the point list say what each colour is
    cursor: { points: { size: 7 } },
  };
  return new uPlot(options, built.data, container);
}
