// The login page: send the password, then go back where the user was headed.

const form = document.getElementById("login-form");
const input = document.getElementById("password");
const button = document.getElementById("login-button");
const errorLine = document.getElementById("login-error");

/** The page to return to: a path on this server only, never another site. */
export function nextPath(search) {
  const next = new URLSearchParams(search).get("next") || "/";
  return /^\/(?![\/\\])/.test(next) ? next : "/";
}

function showError(text) {
  errorLine.textContent = text;
  errorLine.hidden = !text;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  button.disabled = true;
  showError("");
  try {
    const response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ password: input.value }),
      cache: "no-store",
    });
    if (response.ok || response.status === 409) {
      location.replace(nextPath(location.search));
      return;
    }
    const data = await response.json().catch(() => null);
    const message = (data && data.error && data.error.message) || `login failed (${response.status})`;
    showError(message);
    input.select();
  } catch {
    showError("The server cannot be reached. Check the connection and try again.");
  } finally {
    button.disabled = false;
  }
});
