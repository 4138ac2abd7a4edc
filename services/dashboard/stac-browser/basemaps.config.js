// glacierflow's replacement for STAC Browser's basemaps.config.js (put in place by build.mjs):
// the dashboard's basemap (GLACIERFLOW_DASHBOARD_BASEMAP_URL, set by the server in
// /browser/config.js), or none, so that STAC Browser asks nothing of the internet.
export default function configureBasemap() {
  const basemap = window.GLACIERFLOW_BASEMAP;
  if (!basemap) return [];
  return [{ url: basemap.url, is: "XYZ", title: "Basemap", attributions: basemap.attribution, projection: "EPSG:3857" }];
}
