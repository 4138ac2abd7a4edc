// Points from a CSV file a person picks: a header naming lon/longitude and lat/latitude
// columns (any order, comma, semicolon or tab), or no header and lon,lat in the first two
// columns. Rows that are not two numbers in range are named, not guessed at.

export const MAX_CSV_BYTES = 1 << 20;

const LON = ["lon", "longitude", "lng"];
const LAT = ["lat", "latitude"];

/** {points: [[lon, lat], ...], skipped: [line numbers], error: text or null} */
export function parsePointsCsv(text) {
  const lines = text.split(/\r?\n/);
  const separator = [",", ";", "\t"].find((s) => lines[0].includes(s)) ?? ",";
  const first = lines[0].split(separator).map((cell) => cell.trim().toLowerCase());
  let [lonColumn, latColumn, start] = [0, 1, 0];
  if (first.some((cell) => cell !== "" && Number.isNaN(Number(cell)))) {
    lonColumn = first.findIndex((cell) => LON.includes(cell));
    latColumn = first.findIndex((cell) => LAT.includes(cell));
    if (lonColumn < 0 || latColumn < 0) {
      return { points: [], skipped: [], error: "its header has no lon (or longitude) and lat (or latitude) columns" };
    }
    start = 1;
  }
  const points = [];
  const skipped = [];
  for (let i = start; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    const cells = lines[i].split(separator);
    const [lon, lat] = [Number(cells[lonColumn]), Number(cells[latColumn])];
    const valid = cells[lonColumn]?.trim() && cells[latColumn]?.trim()
      && Math.abs(lon) <= 180 && Math.abs(lat) <= 90;
    if (valid) points.push([lon, lat]);
    else skipped.push(i + 1);
  }
  return { points, skipped, error: null };
}
