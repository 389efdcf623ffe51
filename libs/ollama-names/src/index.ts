export { displayModelName, normaliseModelName, parseModelName, type ModelName } from './model-name';
export { keepAliveMs, parseGoDuration } from './duration';
