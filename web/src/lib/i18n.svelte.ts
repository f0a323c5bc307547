// English, Spanish and Portuguese: the language the browser prefers, or the one the user picks
// (kept in localStorage). Every text the portal shows comes from these tables; a key missing from
// one language is a type error, not an English word on a Spanish page.

const en = {
  "app.name": "Roost",
  "nav.dashboard": "Dashboard",
  "nav.devices": "Devices",
  "nav.main": "Main",
  "signin.title": "Sign in",
  "signin.email": "Email",
  "signin.password": "Password",
  "signin.submit": "Sign in",
  "signin.expired": "Your session ended. Sign in again.",
  "signout": "Sign out",
  "language": "Language",
  "theme": "Theme",
  "theme.light": "Light",
  "theme.dark": "Dark",
  "role": "Role",
  "loading": "Loading…",
  "retry": "Retry",
  "error.network": "Roost could not be reached.",
  "dashboard.title": "Dashboard",
  "dashboard.total": "Devices",
  "dashboard.online": "Online",
  "dashboard.offline": "Offline",
  "dashboard.stale": "Stale",
  "dashboard.pending": "Pending",
  "dashboard.faults": "Faults, last 24 h",
  "dashboard.tasks": "Tasks in flight",
  "dashboard.models": "Models",
  "dashboard.versions": "Software versions",
  "devices.title": "Devices",
  "devices.search": "Serial number",
  "devices.state": "State",
  "devices.any": "Any",
  "devices.online": "Online",
  "devices.offline": "Offline",
  "devices.serial": "Serial number",
  "devices.model": "Model",
  "devices.version": "Software version",
  "devices.org": "Organization",
  "devices.lastInform": "Last Inform",
  "devices.none": "No device matches.",
  "devices.next": "Next page",
  "devices.first": "First page",
  "devices.filter": "Filter",
};

export type Key = keyof typeof en;
type Table = Record<Key, string>;

const es: Table = {
  "app.name": "Roost",
  "nav.dashboard": "Panel",
  "nav.devices": "Dispositivos",
  "nav.main": "Principal",
  "signin.title": "Iniciar sesión",
  "signin.email": "Correo electrónico",
  "signin.password": "Contraseña",
  "signin.submit": "Entrar",
  "signin.expired": "Tu sesión terminó. Inicia sesión de nuevo.",
  "signout": "Cerrar sesión",
  "language": "Idioma",
  "theme": "Tema",
  "theme.light": "Claro",
  "theme.dark": "Oscuro",
  "role": "Rol",
  "loading": "Cargando…",
  "retry": "Reintentar",
  "error.network": "No se pudo conectar con Roost.",
  "dashboard.title": "Panel",
  "dashboard.total": "Dispositivos",
  "dashboard.online": "En línea",
  "dashboard.offline": "Desconectados",
  "dashboard.stale": "Inactivos",
  "dashboard.pending": "Pendientes",
  "dashboard.faults": "Fallos, últimas 24 h",
  "dashboard.tasks": "Tareas en curso",
  "dashboard.models": "Modelos",
  "dashboard.versions": "Versiones de software",
  "devices.title": "Dispositivos",
  "devices.search": "Número de serie",
  "devices.state": "Estado",
  "devices.any": "Cualquiera",
  "devices.online": "En línea",
  "devices.offline": "Desconectado",
  "devices.serial": "Número de serie",
  "devices.model": "Modelo",
  "devices.version": "Versión de software",
  "devices.org": "Organización",
  "devices.lastInform": "Último Inform",
  "devices.none": "Ningún dispositivo coincide.",
  "devices.next": "Página siguiente",
  "devices.first": "Primera página",
  "devices.filter": "Filtrar",
};

const pt: Table = {
  "app.name": "Roost",
  "nav.dashboard": "Painel",
  "nav.devices": "Dispositivos",
  "nav.main": "Principal",
  "signin.title": "Entrar",
  "signin.email": "E-mail",
  "signin.password": "Senha",
  "signin.submit": "Entrar",
  "signin.expired": "Sua sessão terminou. Entre novamente.",
  "signout": "Sair",
  "language": "Idioma",
  "theme": "Tema",
  "theme.light": "Claro",
  "theme.dark": "Escuro",
  "role": "Função",
  "loading": "Carregando…",
  "retry": "Tentar de novo",
  "error.network": "Não foi possível contatar o Roost.",
  "dashboard.title": "Painel",
  "dashboard.total": "Dispositivos",
  "dashboard.online": "Online",
  "dashboard.offline": "Offline",
  "dashboard.stale": "Inativos",
  "dashboard.pending": "Pendentes",
  "dashboard.faults": "Falhas, últimas 24 h",
  "dashboard.tasks": "Tarefas em andamento",
  "dashboard.models": "Modelos",
  "dashboard.versions": "Versões de software",
  "devices.title": "Dispositivos",
  "devices.search": "Número de série",
  "devices.state": "Estado",
  "devices.any": "Qualquer",
  "devices.online": "Online",
  "devices.offline": "Offline",
  "devices.serial": "Número de série",
  "devices.model": "Modelo",
  "devices.version": "Versão de software",
  "devices.org": "Organização",
  "devices.lastInform": "Último Inform",
  "devices.none": "Nenhum dispositivo corresponde.",
  "devices.next": "Próxima página",
  "devices.first": "Primeira página",
  "devices.filter": "Filtrar",
};

export const LANGUAGES = { en: "English", es: "Español", pt: "Português" } as const;
export type Language = keyof typeof LANGUAGES;
const TABLES: Record<Language, Table> = { en, es, pt };
const STORAGE_KEY = "roost.language";

/// The user's pick, else the first of the browser's languages Roost speaks, else English.
export function preferred(stored: string | null, browser: readonly string[]): Language {
  if (stored && stored in TABLES) return stored as Language;
  for (const tag of browser) {
    const base = tag.toLowerCase().split("-")[0];
    if (base && base in TABLES) return base as Language;
  }
  return "en";
}

class I18n {
  language = $state<Language>(preferred(localStorage.getItem(STORAGE_KEY), navigator.languages ?? []));

  set(language: Language) {
    this.language = language;
    localStorage.setItem(STORAGE_KEY, language);
    document.documentElement.lang = language;
  }

  t = (key: Key): string => TABLES[this.language][key];

  /// A time in the user's time zone and language.
  time = (iso: string | null | undefined): string =>
    iso
      ? new Intl.DateTimeFormat(this.language, { dateStyle: "medium", timeStyle: "medium" }).format(new Date(iso))
      : "—";

  number = (n: number): string => new Intl.NumberFormat(this.language).format(n);
}

export const i18n = new I18n();
document.documentElement.lang = i18n.language;
