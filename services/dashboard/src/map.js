// The map: no basemap unless the server's settings name one (so it works offline), the
// cubes' outlines from the STAC API, a scale bar, and a marker per point.
import * as maplibregl from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import { getJson } from "./api.js";

const MAX_CUBE_PAGES = 20; // of 100 outlines each

function style(config) {
  const sources = {};
  const layers = [{ id: "background", type: "background", paint: { "background-color": "#eef2f5" } }];
  if (config.basemap_url) {
    sources.basemap = {
      type: "raster",
      tiles: [config.basemap_url],
      tileSize: 256,
      attribution: config.basemap_attribution ?? "",
    };
    layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  return { version: 8, sources, layers };
}

/** The map; `view` ({zoom, center}) where a shared link puts it, else the whole world. */
export function createMap(container, config, view) {
  const map = new maplibregl.Map({
    container,
    style: style(config),
    center: view?.center ?? [0, 60],
    zoom: view?.zoom ?? 1,
    attributionControl: config.basemap_url ? {} : false,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  map.getCanvas().style.cursor = "crosshair";
  return map;
}

/** Every cube's footprint (STAC search of the cubes collection, following `next` links). */
async function cubeOutlines(collection) {
  const features = [];
  let url = `stac/search?collections=${encodeURIComponent(collection)}&limit=100`;
  for (let page = 0; url && page < MAX_CUBE_PAGES; page++) {
    const answer = await getJson(url);
    features.push(...answer.features);
    url = answer.links?.find((link) => link.rel === "next")?.href;
  }
  return { type: "FeatureCollection", features };
}

/** Draw the cubes' outlines, the view going to them if `fit`; resolves to their count. */
export async function showCubes(map, collection, fit) {
  const outlines = await cubeOutlines(collection);
  const draw = () => {
    map.addSource("cubes", { type: "geojson", data: outlines });
    map.addLayer({
      id: "cube-fill", type: "fill", source: "cubes",
      paint: { "fill-color": "#2f6fa3", "fill-opacity": 0.08 },
    }, map.getLayer("speed") ? "speed" : undefined); // the speed layer over the tint, under the lines
    map.addLayer({
      id: "cube-outline", type: "line", source: "cubes",
      paint: { "line-color": "#2f6fa3", "line-width": 1.5 },
    });
  };
  if (map.isStyleLoaded()) draw();
  else map.once("load", draw);
  if (fit && outlines.features.length) {
    const bounds = new maplibregl.LngLatBounds();
    for (const feature of outlines.features) {
      const [w, s, e, n] = feature.bbox;
      bounds.extend([w, s]).extend([e, n]);
    }
    map.fitBounds(bounds, { padding: 30, duration: 0 });
  }
  return outlines.features.length;
}

const MAX_FOOTPRINT_PAGES = 5; // of 100 granules each

/**
 * The footprints of the granules whose footprint meets the current view (STAC search by
 * bbox), drawn as outlines; resolves to {bbox, shown, more} (more: pages left unread).
 */
export async function showFootprints(map, collection) {
  const bounds = map.getBounds();
  const clamp = (v, limit) => Math.max(-limit, Math.min(limit, v));
  const bbox = [clamp(bounds.getWest(), 180), clamp(bounds.getSouth(), 90), clamp(bounds.getEast(), 180), clamp(bounds.getNorth(), 90)]
    .map((v) => Number(v.toFixed(6)));
  const features = [];
  let url = `stac/search?collections=${encodeURIComponent(collection)}&bbox=${bbox.join(",")}&limit=100`;
  for (let page = 0; url && page < MAX_FOOTPRINT_PAGES; page++) {
    const answer = await getJson(url);
    features.push(...answer.features);
    url = answer.links?.find((link) => link.rel === "next")?.href;
  }
  const data = { type: "FeatureCollection", features };
  if (map.getSource("footprints")) map.getSource("footprints").setData(data);
  else {
    map.addSource("footprints", { type: "geojson", data });
    map.addLayer({
      id: "footprints", type: "line", source: "footprints",
      paint: { "line-color": "#d55e00", "line-width": 1 },
    });
  }
  return { bbox, shown: features.length, more: Boolean(url) };
}

export function addMarker(map, lon, lat, colour, label) {
  const marker = new maplibregl.Marker({ color: colour }).setLngLat([lon, lat]).addTo(map);
  marker.getElement().setAttribute("aria-label", label);
  marker.getElement().title = label;
  return marker;
}
