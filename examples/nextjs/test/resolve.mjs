// Module resolution for the code tsc emitted into build/, as Next.js'
// bundler resolves the sources: `@credits/client` is the client's source
// (tsconfig.json `paths`), and a relative import without an extension
// (`../../../lib/credits`) is the emitted `.js` file.
const client = new URL("../build/clients/typescript/src/index.js", import.meta.url).href;
const build = new URL("../build/", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === "@credits/client") return nextResolve(client, context);
  if (context.parentURL?.startsWith(build) && /^\.\.?\//.test(specifier) && !/\.[cm]?js$/.test(specifier)) {
    return nextResolve(`${specifier}.js`, context);
  }
  return nextResolve(specifier, context);
}
