// Pages by path (`/`, `/devices`), with the browser's history: links are real links (a middle
// click opens a tab), clicks on them are routed here. `roost serve` answers the portal's page
// for any path it does not know, so a reload or a shared link lands on its page.

class Router {
  path = $state(location.pathname);
  query = $state(new URLSearchParams(location.search));

  go(href: string, replace = false) {
    const url = new URL(href, location.origin);
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    this.path = url.pathname;
    this.query = url.searchParams;
  }
}

export const router = new Router();

window.addEventListener("popstate", () => {
  router.path = location.pathname;
  router.query = new URLSearchParams(location.search);
});

/// Routes a plain left click on an in-portal link.
export function follow(event: MouseEvent) {
  const anchor = (event.target as Element).closest("a");
  if (!anchor || anchor.origin !== location.origin || anchor.target || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  router.go(anchor.href);
}
