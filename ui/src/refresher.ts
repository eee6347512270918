// When the view looks again: on screen only, on the schedule it is given, at most once a second.

export const REFRESH_MS = 1000; // at most once a second

/** Calls `tick` while the view is on screen and its page is shown, again after the delay
 * `tick` answers (null: nothing left to follow), never more often than once a second. */
export class Refresher {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private onScreen = true;
  private last = -Infinity;
  private running = false;
  private stopped = true;
  private delay = REFRESH_MS;

  constructor(
    root: HTMLElement,
    private readonly tick: () => Promise<number | null>,
  ) {
    if (typeof IntersectionObserver !== "undefined") {
      new IntersectionObserver((entries) => {
        this.onScreen = entries.some((e) => e.isIntersecting);
        this.schedule(0);
      }).observe(root);
    }
    // Back in view: look at once (still at most once a second).
    document.addEventListener("visibilitychange", () => this.schedule(0));
  }

  /** Look at once, then on the schedule. */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Fresh data came another way (a wait's answer): the next look is `delay` from now. */
  postpone(delay: number): void {
    if (this.stopped || this.running) return;
    this.last = Date.now();
    this.delay = delay;
    this.schedule(delay);
  }

  private get visible(): boolean {
    return document.visibilityState !== "hidden" && this.onScreen;
  }

  private schedule(delay: number): void {
    clearTimeout(this.timer);
    if (this.stopped || this.running || !this.visible) return;
    const wait = Math.max(delay, this.last + REFRESH_MS - Date.now(), 0);
    this.timer = setTimeout(() => void this.run(), wait);
  }

  private async run(): Promise<void> {
    if (this.stopped || this.running || !this.visible) return;
    this.running = true;
    this.last = Date.now();
    try {
      const next = await this.tick();
      if (next === null) this.stopped = true;
      else this.delay = next;
    } finally {
      this.running = false;
      this.schedule(this.delay);
    }
  }
}
