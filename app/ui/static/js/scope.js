// What a page leaves running (polling, charts) ends when the user navigates away from it.
export class PageScope {
  #timers = new Set();
  #cleanups = [];
  left = false;

  // Runs `task` `ms` after each run ends (never two at once) until the page is left or the task
  // returns false. A failed run is passed to `onError` and the polling goes on, except for a
  // refused key: then the login form has taken over.
  repeat(ms, task, onError = () => {}) {
    const next = () => {
      const timer = setTimeout(async () => {
        this.#timers.delete(timer);
        if (this.left) return;
        let again = true;
        try {
          again = (await task()) !== false;
        } catch (error) {
          if (error.status === 401) return;
          onError(error);
        }
        if (again && !this.left) next();
      }, ms);
      this.#timers.add(timer);
    };
    next();
  }

  onLeave(cleanup) {
    this.#cleanups.push(cleanup);
  }

  leave() {
    this.left = true;
    this.#timers.forEach(clearTimeout);
    this.#timers.clear();
    this.#cleanups.splice(0).forEach((cleanup) => cleanup());
  }
}
