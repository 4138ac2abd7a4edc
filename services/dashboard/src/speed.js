// The speed layer: the catalog's mosaics of one year (or the climatology, year 0) as map
// tiles from the tile server (titiler-pgstac's mosaic of the mosaics collection, filtered
// by year, Web-Mercator COGs), with the tile server's legend, an opacity and a switch.
// Its state rides in the share link (year=YYYY|0000, opacity=0-100, speed=0 when hidden).
import { busy, getJson } from "./api.js";

const MAX_MOSAIC_PAGES = 20; // of 100 items each
// finer than the mosaics' 120 m pixels at any latitude: MapLibre enlarges the tiles beyond
const TILES_MAXZOOM = 12;
// a quarter of the requests 256 px tiles take (each asks the catalog, then reads the COGs)
const TILE_SIZE = 512;
const CLIMATOLOGY = 0;
const SOURCE = "speed";

const yearName = (year) => String(year).padStart(4, "0");

/** The mosaics' years: {year → {bounds: [w, s, e, n] or null (the antimeridian), window}}. */
async function mosaicYears(collection) {
  const years = new Map();
  const query = new URLSearchParams({
    collections: collection,
    limit: "100",
    fields: "bbox,properties.year,properties.climatology_years",
    filter: "year >= 0", // annual mosaics and summaries: composites have no year
    "filter-lang": "cql2-text",
  });
  let url = `stac/search?${query}`;
  for (let page = 0; url && page < MAX_MOSAIC_PAGES; page++) {
    const answer = await getJson(url);
    for (const { bbox, properties } of answer.features) {
      const [w, s, e, n] = bbox;
      const known = years.get(properties.year);
      const crosses = w > e || (known && !known.bounds);
      const bounds = crosses ? null : known
        ? [Math.min(w, known.bounds[0]), Math.min(s, known.bounds[1]), Math.max(e, known.bounds[2]), Math.max(n, known.bounds[3])]
        : [w, s, e, n];
      years.set(properties.year, { bounds, window: known?.window ?? properties.climatology_years });
    }
    url = answer.links?.find((link) => link.rel === "next")?.href;
  }
  return years;
}

/** What a shared link asks of the layer; values out of range are left out. */
function readShared(hash) {
  const query = new URLSearchParams(hash.replace(/^#/, ""));
  const year = /^\d{4}$/.test(query.get("year") ?? "") ? Number(query.get("year")) : null;
  const opacity = Number(query.get("opacity"));
  return {
    year,
    opacity: query.has("opacity") && Number.isInteger(opacity) && opacity >= 0 && opacity <= 100 ? opacity : null,
    show: query.get("speed") !== "0",
  };
}

function drawLegend(element, legend) {
  const [low, high] = legend.range.map(Math.log10);
  const at = (value) => `${((Math.log10(value) - low) / (high - low)) * 100}%`;
  const stops = legend.stops.filter((_, i) => i % 4 === 0 || i === legend.stops.length - 1);
  const colours = stops.map((stop) => `${stop.color} ${(stop.index / (legend.stops.length - 1)) * 100}%`);
  element.querySelector(".bar").style.background = `linear-gradient(to right, ${colours.join(", ")})`;
  element.querySelector(".ticks").replaceChildren(
    ...legend.ticks.map((tick) => {
      const label = document.createElement("span");
      label.textContent = tick.label;
      label.style.left = at(tick.value);
      return label;
    }),
  );
  element.querySelector(".title").textContent = `${legend.title} (${legend.units}, ${legend.scale} scale)`;
  element.hidden = false;
}

/**
 * The speed control (a MapLibre control holding the page's #speed form) and its layer.
 * `say(text)` reports errors; `changed()` is called when what the share link holds changes.
 */
export class SpeedLayer {
  constructor(map, form, { collection, say, changed }) {
    Object.assign(this, { map, form, collection, say, changed });
    this.years = new Map();
    this.year = null;
    this.shared = readShared(location.hash);
    this.tilesFailed = null; // the year whose tile error was said (once per year)
    form.addEventListener("submit", (event) => event.preventDefault());
    form.elements.show.addEventListener("change", () => this.apply());
    form.elements.year.addEventListener("change", () => {
      form.querySelector(".note").hidden = true; // a shared link's missing year, said
      this.apply();
    });
    form.elements.opacity.addEventListener("input", () => this.apply());
    this.styleReady = new Promise((resolve) => map.once("load", resolve));
    map.on("error", (event) => {
      if (event.sourceId !== SOURCE) {
        console.error(event.error); // what MapLibre logs when nobody listens
        return;
      }
      if (this.tilesFailed === this.year) return;
      this.tilesFailed = this.year;
      const status = event.error?.status;
      const why = status ? `the tile server answered ${status}` : (event.error?.message ?? "no answer");
      say(`The speed tiles of ${this.label(this.year)} could not be drawn (${why}).`);
    });
    // the loading indicator, from the first speed tile asked for until the map is drawn
    this.loading = false;
    map.on("dataloading", (event) => {
      if (event.sourceId !== SOURCE || this.loading) return;
      this.loading = true;
      busy(+1);
    });
    map.on("idle", () => {
      if (!this.loading) return;
      this.loading = false;
      busy(-1);
    });
    map.addControl({ onAdd: () => { form.hidden = false; return form; }, onRemove: () => form.remove() }, "top-left");
  }

  label(year) {
    if (year !== CLIMATOLOGY) return String(year);
    const window = this.years.get(year)?.window;
    return Array.isArray(window) ? `climatology ${window[0]}–${window[1]}` : "climatology";
  }

  /** Read the legend and the mosaics' years and fill the control in (`apply` draws). */
  async load() {
    const elements = this.form.elements;
    let legend;
    try {
      [legend, this.years] = await Promise.all([getJson("tiles/legend/speed"), mosaicYears(this.collection)]);
    } catch (err) {
      this.disable("Not available: the mosaics could not be read.");
      this.say(`The speed mosaics could not be read: ${err.message}`);
      return;
    }
    this.legend = legend;
    if (!this.years.size) {
      this.disable("No mosaics in the catalog yet: glacierflow mosaic build makes them.");
      return;
    }
    const annual = [...this.years.keys()].filter((y) => y !== CLIMATOLOGY).sort((a, b) => b - a);
    const order = this.years.has(CLIMATOLOGY) ? [...annual, CLIMATOLOGY] : annual;
    elements.year.replaceChildren(...order.map((year) => new Option(this.label(year), yearName(year))));
    const { year, opacity, show } = this.shared;
    const note = this.form.querySelector(".note");
    if (year !== null && this.years.has(year)) elements.year.value = yearName(year);
    else if (year !== null) {
      note.textContent = `No mosaic of ${yearName(year)}: showing ${this.label(order[0])}.`;
      note.hidden = false;
    }
    if (opacity !== null) elements.opacity.value = String(opacity);
    elements.show.checked = show;
    drawLegend(this.form.querySelector(".legend"), legend);
    await this.styleReady;
  }

  disable(text) {
    const elements = this.form.elements;
    for (const control of [elements.show, elements.year, elements.opacity]) control.disabled = true;
    elements.show.checked = false;
    elements.year.replaceChildren(new Option("none", ""));
    const note = this.form.querySelector(".note");
    note.textContent = text;
    note.hidden = false;
  }

  /** The tile URL of one year's mosaics, drawn as the legend says (log10, its range). */
  tiles(year) {
    const query = new URLSearchParams({
      assets: "v_3857",
      tilesize: String(TILE_SIZE),
      expression: "log10(b1)",
      rescale: this.legend.range.map(Math.log10).join(","),
      colormap_name: this.legend.colormap_name,
      filter: `year=${year}`,
      "filter-lang": "cql2-text",
    });
    const base = new URL("tiles/", document.baseURI).href; // absolute: MapLibre's worker fetches it
    return `${base}collections/${encodeURIComponent(this.collection)}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?${query}`;
  }

  /** Draw what the form says: the layer of the chosen year (replaced when the year changes). */
  apply() {
    const elements = this.form.elements;
    const map = this.map;
    const year = Number(elements.year.value);
    if (!this.years.has(year)) return; // no mosaics, or they could not be read
    const opacity = Number(elements.opacity.value) / 100;
    elements.opacity.setAttribute("aria-valuetext", `${elements.opacity.value} %`);
    if (year !== this.year && map.getSource(SOURCE)) {
      map.removeLayer(SOURCE);
      map.removeSource(SOURCE);
    }
    this.year = year;
    if (!map.getSource(SOURCE)) {
      const { bounds } = this.years.get(year);
      map.addSource(SOURCE, {
        type: "raster",
        tiles: [this.tiles(year)],
        tileSize: TILE_SIZE,
        maxzoom: TILES_MAXZOOM,
        ...(bounds ? { bounds } : {}),
      });
      const below = map.getLayer("cube-outline") ? "cube-outline" : undefined; // outlines on top
      map.addLayer({
        id: SOURCE,
        type: "raster",
        source: SOURCE,
        paint: { "raster-opacity": opacity, "raster-resampling": "nearest", "raster-fade-duration": 0 },
      }, below);
    }
    map.setPaintProperty(SOURCE, "raster-opacity", opacity);
    map.setLayoutProperty(SOURCE, "visibility", elements.show.checked ? "visible" : "none");
    this.changed();
  }

  /** The layer's part of the share link. */
  share(query) {
    if (this.year === null) return;
    query.set("year", yearName(this.year));
    query.set("opacity", this.form.elements.opacity.value);
    if (!this.form.elements.show.checked) query.set("speed", "0");
  }
}
