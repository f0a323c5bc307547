// Light and dark themes: the system's until the user picks one (kept in localStorage).
export type Theme = "light" | "dark";
const STORAGE_KEY = "roost.theme";

class Themes {
  theme = $state<Theme>(
    (localStorage.getItem(STORAGE_KEY) as Theme | null) ??
      (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"),
  );

  set(theme: Theme) {
    this.theme = theme;
    localStorage.setItem(STORAGE_KEY, theme);
    document.documentElement.dataset.theme = theme;
  }
}

export const themes = new Themes();
document.documentElement.dataset.theme = themes.theme;
