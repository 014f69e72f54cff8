// README "Idempotent workers": `processFile`, the job's effect.
export async function processFile(filepath: string, options: { signal: AbortSignal }): Promise<{ filepath: string }> {
  options.signal.throwIfAborted();
  return { filepath };
}
