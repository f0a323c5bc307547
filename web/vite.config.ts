import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// The portal is served by `roost serve` from `web/dist` at `/`; during development Vite proxies
// the API to a Roost on localhost:8080.
export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir: "dist",
    assetsDir: "assets",
    // Every byte of JavaScript counts toward the first load (docs/BENCHMARKS.md): no source maps
    // shipped, and a warning well before the budget.
    sourcemap: false,
    chunkSizeWarningLimit: 250,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
