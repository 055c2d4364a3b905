// Module resolution hooks: the k6 built-in modules a script imports are
// served by this shim's files.
const modules = {
  k6: './k6.mjs',
  'k6/http': './http.mjs',
  'k6/metrics': './metrics.mjs',
};

export async function resolve(specifier, context, next) {
  const file = modules[specifier];
  if (file) {
    return { url: new URL(file, import.meta.url).href, format: 'module', shortCircuit: true };
  }
  if (specifier.startsWith('k6/')) {
    throw new Error(`k6 shim: module ${specifier} is not implemented (only k6, k6/http, k6/metrics)`);
  }
  return next(specifier, context);
}
