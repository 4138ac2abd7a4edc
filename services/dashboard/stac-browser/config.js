// STAC Browser's settings, read when the page loads: the catalog is the STAC API of the
// server that serves this file (its /stac/, beside /browser/), whatever its host and port.
window.STAC_BROWSER_CONFIG = {
  catalogUrl: new URL("../stac/", document.currentScript.src).href,
  catalogTitle: "glacierflow",
  allowExternalAccess: false,
  socialSharing: [],
};
