export { buildServer, type ServerDeps, type TalkbatchServer } from './build-server.js';
export { startServer, type RunningServer, type StartServerOptions } from './start.js';
export { TalkbatchMetrics } from './metrics.js';
export { liveWorkers, type LiveWorker } from './health.js';
