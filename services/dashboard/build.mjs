// Builds the dashboard into dist/ (served by `glacierflow serve` at /): one ES module with
// MapLibre and uPlot bundled, its CSS, MapLibre's worker beside it, and the page.
// Written to a staging folder and swapped in, so a failed build leaves the last good one.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const staging = join(here, "dist.staging");
rmSync(staging, { recursive: true, force: true });
mkdirSync(join(staging, "dashboard"), { recursive: true });

await build({
  entryPoints: [join(here, "src", "main.js")],
  outdir: join(staging, "dashboard"),
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2022",
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(staging, "index.html"));
// MapLibre starts its worker from the URL beside the module that imports it
copyFileSync(
  join(here, "node_modules", "maplibre-gl", "dist", "maplibre-gl-worker.mjs"),
  join(staging, "dashboard", "maplibre-gl-worker.mjs"),
);
rmSync(dist, { recursive: true, force: true });
renameSync(staging, dist);
