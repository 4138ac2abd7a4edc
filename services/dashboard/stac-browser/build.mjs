// Builds STAC Browser (the npm package @radiantearth/stac-browser, its Vue CLI sources) into
// dist/ for glacierflow: served at /browser/ in history mode, its settings read at run time
// from /browser/config.js, which the server writes (the catalog's URL follows the server, so
// one build serves any host), and our basemaps.config.js in place of the package's.
// Built in a copy of the package, written to a staging folder and swapped in.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const work = join(here, "work");
const staging = join(here, "dist.staging");
const dist = join(here, "dist");

rmSync(work, { recursive: true, force: true });
rmSync(staging, { recursive: true, force: true });
cpSync(join(here, "node_modules", "@radiantearth", "stac-browser"), work, { recursive: true });
// its sources import some files by paths into their own node_modules folder
symlinkSync(join(here, "node_modules"), join(work, "node_modules"), "dir");

copyFileSync(join(here, "basemaps.config.js"), join(work, "basemaps.config.js"));
// the page loads config.js before the app (the package leaves that line commented out)
const page = join(work, "public", "index.html");
const commented = /<!--\s*<script defer="defer" src="\/config.js"><\/script>\s*-->/;
const html = readFileSync(page, "utf8");
if (!commented.test(html)) throw new Error(`${page}: the config.js line moved; update build.mjs`);
writeFileSync(page, html.replace(commented, '<script src="<%= BASE_URL %>config.js"></script>'));

console.error("building STAC Browser with Vue CLI: 1-4 minutes");
const service = join(here, "node_modules", "@vue", "cli-service", "bin", "vue-cli-service.js");
const built = spawnSync(
  process.execPath,
  [service, "build", "--dest", staging, "--noSourceMaps"],
  {
    cwd: work,
    encoding: "utf8",
    maxBuffer: 1 << 28,
    env: { ...process.env, NODE_ENV: "production", SB_pathPrefix: "/browser/", SB_historyMode: "history" },
  },
);
// its hundreds of warnings (Sass deprecations, bundle sizes) only when the build fails
if (built.status !== 0) {
  process.stdout.write(built.stdout ?? "");
  process.stderr.write(built.stderr ?? "");
  throw new Error(`vue-cli-service build failed (${built.status ?? built.error})`);
}
rmSync(join(staging, "config.js"), { force: true }); // the server answers /browser/config.js
rmSync(dist, { recursive: true, force: true });
renameSync(staging, dist);
rmSync(work, { recursive: true, force: true });
