import type { Client as FetchClient } from 'openapi-fetch';
import { unwrap } from './errors.js';
import type { components, paths } from './openapi.js';

export type Task = components['schemas']['Task'];
export type OpenTask = components['schemas']['OpenTask'];

/** The orchestrator's calls: open a task, complete it, and run code inside one. */
export function createTasks(api: FetchClient<paths>) {
  const tasks = {
    /** Opens a task; the broker assigns its id (`external_id` is your own reference, optional). */
    async open(input: OpenTask): Promise<Task> {
      return unwrap(await api.POST('/v1/tasks', { body: input })).task;
    },
    /** Completes a task: every lease of it is revoked. */
    async complete(id: string, outcome: string): Promise<{ task: Task; revoking: number }> {
      return unwrap(await api.POST('/v1/tasks/{id}/complete', { params: { path: { id } }, body: { outcome } }));
    },
    async get(id: string) {
      return unwrap(await api.GET('/v1/tasks/{id}', { params: { path: { id } } }));
    },
    /**
     * Opens a task, runs `fn` with it, and completes it on every way out:
     * `succeeded` when `fn` returns, `failed` when it throws (the error is
     * rethrown; a failure to complete is attached as its `completionError`).
     */
    async withTask<T>(input: OpenTask, fn: (task: Task) => Promise<T> | T): Promise<T> {
      const task = await tasks.open(input);
      let result: T;
      try {
        result = await fn(task);
      } catch (err) {
        await tasks.complete(task.id, 'failed').catch((completionError: unknown) => {
          if (typeof err === 'object' && err !== null) Object.assign(err, { completionError });
        });
        throw err;
      }
      await tasks.complete(task.id, 'succeeded');
      return result;
    },
  };
  return tasks;
}
