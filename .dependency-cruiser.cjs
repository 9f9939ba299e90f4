/**
 * Module boundaries of talkbatch, checked by `npm run lint` (dependency-cruiser). Each rule names the concern it
 * keeps in one place; docs/decisions.md says why the layers are what they are.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A runtime import cycle couples modules both ways (and can see half-initialised exports); break it by moving the shared part down a layer. A cycle closed only by `import type` is erased at build time.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'entry-points-on-top',
      comment: 'Only the entry points (cli/, server/, index.ts) may be imported by nothing in src/ but each other.',
      severity: 'error',
      from: { path: '^src/(app|schedules|queue|worker|manifest|report|download|did|net|shared|config|simulator)/' },
      to: { path: '^src/(cli|server)/|^src/index[.]ts$' },
    },
    {
      name: 'app-below-entry-points',
      comment: 'Application services (app/) are shared by the CLI, the server and the library: they never reach up.',
      severity: 'error',
      from: { path: '^src/app/' },
      to: { path: '^src/(cli|server|schedules)/' },
    },
    {
      name: 'lower-layers-do-not-call-app',
      comment: 'queue/, worker/, manifest/, report/, download/, did/, net/, shared/ and config/ are used by app/, not the reverse.',
      severity: 'error',
      from: { path: '^src/(queue|worker|manifest|report|download|did|net|shared|config)/' },
      to: { path: '^src/(app|schedules)/' },
    },
    {
      name: 'only-did-speaks-http-to-d-id',
      comment: 'HTTP goes through did/ (D-ID, its result links) or net/ (public-only requests made for a user); the simulator is D-ID.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(did|net|simulator)/' },
      to: { path: 'node_modules/undici/' },
    },
    {
      name: 'simulator-speaks-d-id-only',
      comment: "The simulator checks requests against D-ID's published document, never against talkbatch's own schemas.",
      severity: 'error',
      from: { path: '^src/simulator/' },
      to: { path: '^src/', pathNot: '^src/(simulator|shared)/' },
    },
    {
      name: 'only-config-reads-settings',
      comment: 'dotenv is read by config/ alone; everything else gets a parsed Config.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/config/' },
      to: { path: 'node_modules/dotenv/' },
    },
    {
      name: 'bullmq-in-queue-layers-only',
      comment: 'Readers, the D-ID client and downloads know nothing of the queue.',
      severity: 'error',
      from: { path: '^src/(manifest|did|download|net|config|simulator)/' },
      to: { path: 'node_modules/(bullmq|ioredis)/' },
    },
    {
      name: 'no-dev-dependencies-at-runtime',
      comment: 'Runtime code may not import what `npm ci --omit=dev` leaves out.',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
