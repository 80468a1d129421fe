import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The build lands inside the Python package so the api service serves it (package data);
// it is not committed: `./run.sh` builds it when the sources are newer than the build.
const outDir = fileURLToPath(new URL("../services/api/static", import.meta.url));

export default defineConfig({
  base: "/",
  build: {
    outDir,
    emptyOutDir: true,
    // Assets under /assets/ with content hashes: the server caches them for good.
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    // `npm run dev` against a running `helios dev` (its api on 8080 by default).
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
