// The states of a bulk action's devices, in the order a device goes through them, with their
// words and colours (the bar, the filter and the table all read this one list), and the
// action's own states.
import { i18n, type Key } from "./i18n.svelte";

export const DEVICE_STATES: { key: string; label: Key; colour: string }[] = [
  { key: "done", label: "bulk.done", colour: "var(--ok)" },
  { key: "started", label: "bulk.started.state", colour: "var(--accent)" },
  { key: "waiting", label: "bulk.waiting", colour: "var(--border)" },
  { key: "failed", label: "bulk.failed", colour: "var(--danger)" },
  { key: "cancelled", label: "bulk.cancelled", colour: "var(--muted)" },
];

const LABELS: Record<string, Key> = {
  running: "bulk.running",
  completed: "bulk.completed",
  ...Object.fromEntries(DEVICE_STATES.map((s) => [s.key, s.label])),
};

/// A state in the user's language (a state the API adds later is shown as it is).
export const bulkState = (state: string): string => (LABELS[state] ? i18n.t(LABELS[state]) : state);
