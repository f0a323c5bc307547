// The states of a bulk action and of its devices, in the user's language (the API's words for
// a state it may add later are shown as they are).
import { i18n, type Key } from "./i18n.svelte";

const LABELS: Record<string, Key> = {
  running: "bulk.running",
  completed: "bulk.completed",
  cancelled: "bulk.cancelled",
  waiting: "bulk.waiting",
  started: "bulk.started.state",
  done: "bulk.done",
  failed: "bulk.failed",
};

export const bulkState = (state: string): string => (LABELS[state] ? i18n.t(LABELS[state]) : state);
