// Events come in bursts (a fleet coming back online, a bulk action's tasks finishing): a page
// that reloads on them reloads once per burst, `ms` after its first event, not once per event.

export interface Coalesced {
  (): void;
  /// Drops a reload not run yet (the page is going away).
  cancel(): void;
}

export function throttled(run: () => void, ms: number): Coalesced {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const soon = () => {
    timer ??= setTimeout(() => {
      timer = null;
      run();
    }, ms);
  };
  soon.cancel = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return soon;
}
