// The API key lives in sessionStorage: it survives a reload of this tab and is gone when the tab
// closes, and other tabs (or sites) never see it.
const STORAGE_KEY = "thaw.apiKey";

export const session = {
  key: () => sessionStorage.getItem(STORAGE_KEY),
  save: (key) => sessionStorage.setItem(STORAGE_KEY, key),
  clear: () => sessionStorage.removeItem(STORAGE_KEY),
};
