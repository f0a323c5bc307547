// Confirmation before an action that changes a device or cannot be undone: one dialog for the
// whole portal (components/Confirm.svelte), asked for with `confirm(...)`.
class Confirmation {
  question = $state<{ text: string; action: string; resolve: (yes: boolean) => void } | null>(null);

  ask(text: string, action: string): Promise<boolean> {
    this.question?.resolve(false);
    return new Promise((resolve) => (this.question = { text, action, resolve }));
  }

  answer(yes: boolean) {
    this.question?.resolve(yes);
    this.question = null;
  }
}

export const confirmation = new Confirmation();
export const confirm = (text: string, action: string) => confirmation.ask(text, action);
