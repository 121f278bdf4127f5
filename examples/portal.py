"""A portal: a login form (session), an admin page behind basic auth, a validated JSON
endpoint, and ``/api/**`` proxied to examples/upstream.py, whose tick stream the home
page shows as it is relayed.

    python examples/upstream.py &                    # the service, on :3001
    python examples/portal.py                        # http://127.0.0.1:3000

Environment: ``UPSTREAM_URL`` (default http://127.0.0.1:3001), ``PORTAL_SECRET`` (32+
characters; a fixed development secret otherwise), ``ADMIN_PASSWORD`` (default "admin"),
``PORTAL_SECURE_COOKIES=1`` behind HTTPS.
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import hmac
import html as htmllib
import os
from typing import Any

from h3green import H3, H3Event, HTTPError, Response, html, redirect, serve
from h3green.utils import basic_auth, proxy_request, read_validated_body, use_session

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:3001")
SECRET = os.environ.get("PORTAL_SECRET", "development secret -- set PORTAL_SECRET in production")
SECURE = os.environ.get("PORTAL_SECURE_COOKIES", "") == "1"
#: Demo accounts: name -> password (a real app keeps password hashes in a database).
USERS = {"ada": "lovelace", "alan": "turing"}
NOTES: list[dict[str, Any]] = []

app = H3()


def session_of(event: H3Event) -> Any:
    return use_session(event, secret=SECRET, name="portal", max_age=8 * 3600, cookie={"secure": SECURE})


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>h3green portal</title>
<h1>Portal</h1>
{account}
<h2>Clock (relayed from the upstream service)</h2>
<p>Last tick: <span id="tick">-</span></p>
<ol id="ticks"></ol>
<script>
const source = new EventSource("/api/ticks");
source.addEventListener("tick", (e) => {{
  const tick = JSON.parse(e.data);
  document.getElementById("tick").textContent = tick.tick;
  const item = document.createElement("li");
  item.textContent = "tick " + tick.tick + " at " + tick.time;
  document.getElementById("ticks").prepend(item);
}});
</script>
"""

LOGIN = """<form method="post" action="/login">
  <label>Name <input name="username" autocomplete="username"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label>
  <button>Log in</button>
</form>{error}"""

LOGGED_IN = """<p>Signed in as <b id="user">{user}</b>.</p>
<form method="post" action="/logout"><button>Log out</button></form>"""


@app.get("/")
def home(event: H3Event) -> Response:
    user = session_of(event).data.get("user")
    if user:
        account = LOGGED_IN.format(user=htmllib.escape(user))
    else:
        error = '<p id="error">Wrong name or password.</p>' if event.get_query("error") else ""
        account = LOGIN.format(error=error)
    return html(PAGE.format(account=account))


@app.post("/login")
def login(event: H3Event) -> Response:
    form = event.read_form()
    username, password = form.get("username") or "", form.get("password") or ""
    if not isinstance(username, str) or not isinstance(password, str):
        return redirect("/?error=1", 303)  # a file where a field belongs
    expected = USERS.get(username, "")
    # Compare even for unknown names, so timing does not tell which names exist.
    if not (hmac.compare_digest(expected.encode(), password.encode()) and expected):
        return redirect("/?error=1", 303)
    session = session_of(event)
    session.clear()  # a new id on login: no session fixation
    session.update(user=username)
    return redirect("/", 303)


@app.post("/logout")
def logout(event: H3Event) -> Response:
    session_of(event).clear()
    return redirect("/", 303)


admin = H3()
admin.use(
    basic_auth(username="admin", password=os.environ.get("ADMIN_PASSWORD", "admin"), realm="portal admin")
)


@admin.get("/")
def admin_home(event: H3Event) -> Response:
    return html(f"<h1>Admin</h1><p>{len(NOTES)} note(s).</p>")


app.mount("/admin", admin)


def valid_note(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    text = data.get("text")
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= 280:
        raise ValueError("text must be a string of 1 to 280 characters")
    return {"text": text.strip(), "tags": [str(tag) for tag in data.get("tags", [])][:5]}


@app.post("/notes")
def add_note(event: H3Event) -> Response:
    user = session_of(event).data.get("user")
    if not user:
        raise HTTPError(401, "log in first")
    note = {**read_validated_body(event, valid_note), "by": user}
    NOTES.append(note)
    return Response(note, 201)


@app.all("/api/**")
def api(event: H3Event) -> Response | None:
    return proxy_request(event, UPSTREAM + event.target.removeprefix("/api"), xfwd=True)


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
