export { loadConfig, type LoadConfigOptions } from './load.js';
export { ENV_SCHEMA, SECRET_ENV_NAMES, type Config, type EnvName } from './schema.js';
