import { fileURLToPath } from "node:url";

// The credits client is a package of this repository (`file:../../clients/typescript`):
// the bundler's root is the repository, so it may follow the link.
const root = fileURLToPath(new URL("../..", import.meta.url));

/** @type {import("next").NextConfig} */
export default {
  turbopack: { root },
  outputFileTracingRoot: root,
  poweredByHeader: false,
};
