// `node --import ./test/register.mjs`: runs what `tsc -p tsconfig.test.json`
// emitted into build/ with the resolution Next.js' bundler gives the
// sources (see resolve.mjs).
import { register } from "node:module";

register("./resolve.mjs", import.meta.url);
