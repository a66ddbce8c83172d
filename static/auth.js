// The login this page runs under: a logout button when the server asks for a password.

import { api } from "/static/api.js";

/** Show "Log out" when this tab is logged in with a cookie, and wire it. */
export async function wireLogout() {
  const foot = document.getElementById("sidebar-foot");
  const button = document.getElementById("logout-button");
  let auth;
  try {
    auth = await api("GET", "/api/auth");
  } catch {
    return; // a 401 already sent the page to the login
  }
  foot.hidden = auth.credential !== "cookie";
  foot.dataset.credential = auth.credential || "none";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", "/api/logout");
    } finally {
      location.assign("/login");
    }
  });
}
