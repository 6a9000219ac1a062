import { defineConfig } from "vitest/config";

// During development the API is proxied to a running hostd (self-signed certificate).
// In production hostd serves ui/dist itself, from the same origin.
declare const process: { env: Record<string, string | undefined> };
const target = process.env.KEEL_API ?? "https://127.0.0.1:8006";

export default defineConfig({
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 800 },
  server: { proxy: { "/api": { target, secure: false, ws: true, changeOrigin: true } } },
  preview: { proxy: { "/api": { target, secure: false, ws: true, changeOrigin: true } } },
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});
