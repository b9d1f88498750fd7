// Module resolution for the code tsc emitted into build/, as Next.js'
// bundler resolves the sources: a relative import without an extension
// (`../../../lib/credits`) is the emitted `.js` file.
const build = new URL("../build/", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (context.parentURL?.startsWith(build) && /^\.\.?\//.test(specifier) && !/\.[cm]?js$/.test(specifier)) {
    return nextResolve(`${specifier}.js`, context);
  }
  return nextResolve(specifier, context);
}
