/** A one-shot message for the next page (e.g. "VM 500 deleted." after the delete dialog
 * navigated back to the list). Read once, then gone. */
let pending: string | null = null;

export function setFlash(text: string): void { pending = text; }

export function takeFlash(): string | null {
  const t = pending;
  pending = null;
  return t;
}

/** How long a success message stays before it clears itself (errors stay). */
export const NOTICE_MS = 5000;
