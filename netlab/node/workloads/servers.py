"""The images whose server Debian ships run that server, set up as the official image's entrypoint
sets it up, then executed in place (the container's process becomes the server):

- redis: `redis-server` with protected mode off (the official image builds it so) in /data;
  arguments starting with `-` or a `.conf` file go to redis-server, as its entrypoint does;
- redis-follower (the guestbook's gb-redis-follower): redis-server replicating redis-leader:6379;
- mysql/mariadb: MariaDB initialized on first start from MYSQL_* (or MARIADB_*) variables, in
  /var/lib/mysql (the container's writable layer or its volume), then `mariadbd` on port 3306;
- httpd: Apache with the official image's layout: /usr/local/apache2/{conf,htdocs,logs}, port 80,
  "It works!", logs to the container's stdout and stderr;
- gb-frontend: the guestbook's PHP page (guestbook.php) on Debian's php, port 80.

Any other command of these images (redis-cli, mysql, ...) runs as the host's tool of that name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys


def run(name: str, entrypoint: str | None, args: list[str]) -> None:
    {"redis": redis, "redis-follower": redis_follower, "mysql": mysql, "httpd": httpd,
     "gb-frontend": gb_frontend}[name](entrypoint, args)


def _exec(argv: list[str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe is None:
        sys.exit(f'exec: "{argv[0]}": executable file not found in $PATH')
    os.execve(exe, argv, dict(os.environ))


def _workdir(path: str) -> None:
    """The image's WORKDIR, unless the container set its own workingDir."""
    if os.getcwd() == "/":
        os.makedirs(path, exist_ok=True)
        os.chdir(path)


# --- redis -------------------------------------------------------------------------------------

def redis(entrypoint: str | None, args: list[str]) -> None:
    argv = [os.path.basename(entrypoint)] + args if entrypoint else list(args)
    if argv[:1] == ["docker-entrypoint.sh"]:
        argv = argv[1:]
    if not argv or argv[0].startswith("-") or argv[0].endswith(".conf"):
        argv = ["redis-server", *argv]
    if os.path.basename(argv[0]) != "redis-server":
        _exec(argv)
    _workdir("/data")
    if "--protected-mode" not in argv:  # the official image's redis-server is built with it off
        argv += ["--protected-mode", "no"]
    _exec(["/usr/bin/redis-server", *argv[1:]])


def redis_follower(entrypoint: str | None, args: list[str]) -> None:
    """gb-redis-follower's run.sh: a replica of the leader, by its Service's DNS name or (with
    GET_HOSTS_FROM=env) the Service's environment variable."""
    if entrypoint and os.path.basename(entrypoint) == "redis-server":
        redis(entrypoint, args)
    leader = "redis-leader"
    if os.environ.get("GET_HOSTS_FROM", "dns") == "env":
        leader = os.environ.get("REDIS_LEADER_SERVICE_HOST", leader)
    redis(None, ["--replicaof", leader, "6379"])


# --- mysql / mariadb ---------------------------------------------------------------------------

DATADIR = "/var/lib/mysql"


def _var(name: str) -> str | None:
    """MYSQL_X, or the mariadb image's MARIADB_X."""
    for key in (f"MARIADB_{name}", f"MYSQL_{name}"):
        if os.environ.get(key):
            return os.environ[key]
    return None


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == path for line in fh)


def _sql(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(text: str) -> str:
    return "`" + text.replace("`", "``") + "`"


def mysql(entrypoint: str | None, args: list[str]) -> None:
    argv = [os.path.basename(entrypoint)] + args if entrypoint else list(args)
    if argv[:1] == ["docker-entrypoint.sh"]:
        argv = argv[1:]
    if not argv or argv[0].startswith("-"):
        argv = ["mysqld", *argv]
    if os.path.basename(argv[0]) not in ("mysqld", "mariadbd"):
        _exec(argv)
    extra = argv[1:]
    os.makedirs("/run/mysqld", exist_ok=True)
    shutil.chown("/run/mysqld", "mysql", "mysql")
    if not _mounted(DATADIR) and not os.path.exists(f"{DATADIR}/.netlab-image"):
        # the image's /var/lib/mysql starts empty; this root's lower layer is the host's (Debian's own
        # database): cleared here, in the container's writable layer only
        if os.path.isdir(DATADIR):
            for entry in os.listdir(DATADIR):
                p = os.path.join(DATADIR, entry)
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        os.makedirs(DATADIR, exist_ok=True)
        open(f"{DATADIR}/.netlab-image", "w").close()
    shutil.chown(DATADIR, "mysql", "mysql")
    if not os.path.isdir(f"{DATADIR}/mysql"):
        _initialize(extra)
    print("[Entrypoint]: MariaDB init process done. Ready for start up.", flush=True)
    _exec(["/usr/sbin/mariadbd", "--user=mysql", f"--datadir={DATADIR}", "--bind-address=*", "--port=3306",
           "--skip-name-resolve", "--host-cache-size=0", *extra])


def _initialize(extra: list[str]) -> None:
    """As the official entrypoint's first start: a password option is required; root gets it at
    localhost and '%' (MYSQL_ROOT_HOST), then MYSQL_DATABASE and MYSQL_USER/MYSQL_PASSWORD."""
    root_pw, rand = _var("ROOT_PASSWORD"), _var("RANDOM_ROOT_PASSWORD")
    empty = _var("ALLOW_EMPTY_PASSWORD") or _var("ALLOW_EMPTY_ROOT_PASSWORD")
    if not (root_pw or empty or rand):
        print("[ERROR] [Entrypoint]: Database is uninitialized and password option is not specified\n"
              "\tYou need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, "
              "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD", file=sys.stderr, flush=True)
        sys.exit(1)
    if rand and not root_pw:
        root_pw = secrets.token_urlsafe(24)
        print(f"[Note] [Entrypoint]: GENERATED ROOT PASSWORD: {root_pw}", flush=True)
    root_pw = root_pw or ""
    print("[Note] [Entrypoint]: Initializing database files", flush=True)
    subprocess.run(["/usr/bin/mariadb-install-db", "--user=mysql", f"--datadir={DATADIR}", "--skip-test-db",
                    "--auth-root-authentication-method=normal", "--rpm", "--skip-name-resolve", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    root_host = _var("ROOT_HOST") or "%"
    sql = ["FLUSH PRIVILEGES;", "DELETE FROM mysql.global_priv WHERE User='';",
           f"ALTER USER 'root'@'localhost' IDENTIFIED BY {_sql(root_pw)};"]
    if root_host != "localhost":
        sql += [f"CREATE USER 'root'@{_sql(root_host)} IDENTIFIED BY {_sql(root_pw)};",
                f"GRANT ALL ON *.* TO 'root'@{_sql(root_host)} WITH GRANT OPTION;"]
    db, user, pw = _var("DATABASE"), _var("USER"), _var("PASSWORD")
    if db:
        print(f"[Note] [Entrypoint]: Creating database {db}", flush=True)
        sql.append(f"CREATE DATABASE IF NOT EXISTS {_ident(db)};")
    if user and pw is not None:
        print(f"[Note] [Entrypoint]: Creating user {user}", flush=True)
        sql.append(f"CREATE USER {_sql(user)}@'%' IDENTIFIED BY {_sql(pw)};")
        if db:
            print(f"[Note] [Entrypoint]: Giving user {user} access to schema {db}", flush=True)
            sql.append(f"GRANT ALL ON {_ident(db)}.* TO {_sql(user)}@'%';")
    subprocess.run(["/usr/sbin/mariadbd", "--bootstrap", "--user=mysql", f"--datadir={DATADIR}", "--skip-networking",
                    "--log-warnings=0", *extra], input="\n".join(sql) + "\n", text=True, check=True,
                   stdout=subprocess.DEVNULL)


# --- httpd -------------------------------------------------------------------------------------

APACHE = "/usr/local/apache2"
HTTPD_CONF = f"""# the official httpd image's layout, on Debian's Apache and modules
ServerRoot "{APACHE}"
Listen 80
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authz_host_module /usr/lib/apache2/modules/mod_authz_host.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
User daemon
Group daemon
ServerName localhost
ServerAdmin you@example.com
DocumentRoot "{APACHE}/htdocs"
<Directory />
    AllowOverride none
    Require all denied
</Directory>
<Directory "{APACHE}/htdocs">
    Options Indexes FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
DirectoryIndex index.html
<Files ".ht*">
    Require all denied
</Files>
ErrorLog /proc/self/fd/2
LogLevel warn
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog /proc/self/fd/1 common
TypesConfig /etc/mime.types
PidFile {APACHE}/logs/httpd.pid
DefaultRuntimeDir {APACHE}/logs
Mutex file:{APACHE}/logs default
IncludeOptional {APACHE}/conf/extra/*.conf
"""


def httpd(entrypoint: str | None, args: list[str]) -> None:
    argv = [os.path.basename(entrypoint)] + args if entrypoint else list(args)
    if not argv or argv[0].startswith("-"):
        argv = ["httpd-foreground", *argv]
    if os.path.basename(argv[0]) not in ("httpd-foreground", "httpd", "apache2"):
        _exec(argv)
    for d in ("conf/extra", "htdocs", "logs"):
        os.makedirs(f"{APACHE}/{d}", exist_ok=True)
    for path, text in ((f"{APACHE}/conf/httpd.conf", HTTPD_CONF),
                       (f"{APACHE}/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n")):
        if not os.path.exists(path):  # what a volume or ConfigMap mounted there holds wins
            with open(path, "w") as fh:
                fh.write(text)
    if os.path.exists(f"{APACHE}/logs/httpd.pid"):  # as httpd-foreground: a stale pid file stops Apache
        os.unlink(f"{APACHE}/logs/httpd.pid")
    _workdir(APACHE)
    _exec(["/usr/sbin/apache2", "-f", f"{APACHE}/conf/httpd.conf", "-DFOREGROUND", *argv[1:]])


# --- the guestbook's frontend ------------------------------------------------------------------

GUESTBOOK_PHP = r"""<?php
// The guestbook's API: cmd=set writes a key on the redis leader, cmd=get reads it from a follower.
// With GET_HOSTS_FROM=env the Services' environment variables name them, else their DNS names.
function redis_host($service) {
  if (getenv('GET_HOSTS_FROM') == 'env') {
    $host = getenv(strtoupper(str_replace('-', '_', $service)) . '_SERVICE_HOST');
    if ($host !== false) { return $host; }
  }
  return $service;
}
header('Content-Type: application/json');
if (isset($_GET['cmd'])) {
  $redis = new Redis();
  if ($_GET['cmd'] == 'set') {
    $redis->connect(redis_host('redis-leader'), 6379);
    $redis->set($_GET['key'], $_GET['value']);
    print('{"message": "Updated"}');
  } else {
    $redis->connect(redis_host('redis-follower'), 6379);
    $value = $redis->get($_GET['key']);
    print(json_encode(array('data' => $value === false ? '' : $value), JSON_UNESCAPED_SLASHES));
  }
} else {
  phpinfo();
}
"""

GUESTBOOK_HTML = """<html ng-app="redis">
  <head>
    <title>Guestbook</title>
  </head>
  <body>
    <div style="width: 50%; margin-left: 20px">
      <h2>Guestbook</h2>
      <form onsubmit="submitMessage(); return false;">
        <fieldset>
          <input id="msg" placeholder="Messages" class="form-control" type="text" name="input"><br>
          <button type="submit" class="btn btn-primary">Submit</button>
        </fieldset>
      </form>
      <div id="messages"></div>
    </div>
    <script>
      var messages = [];
      function show() {
        document.getElementById('messages').innerHTML =
          messages.map(function (m) { return '<div>' + m.replace(/</g, '&lt;') + '</div>'; }).join('');
      }
      function submitMessage() {
        messages.push(document.getElementById('msg').value);
        document.getElementById('msg').value = '';
        fetch('guestbook.php?cmd=set&key=messages&value=' + encodeURIComponent(messages.join(','))).then(show);
      }
      fetch('guestbook.php?cmd=get&key=messages').then(function (r) { return r.json(); }).then(function (d) {
        messages = d.data ? d.data.split(',') : [];
        show();
      });
    </script>
  </body>
</html>
"""


def gb_frontend(entrypoint: str | None, args: list[str]) -> None:
    if entrypoint or args:
        _exec([os.path.basename(entrypoint)] + args if entrypoint else args)
    root = "/var/www/html"
    os.makedirs(root, exist_ok=True)
    for name, text in (("guestbook.php", GUESTBOOK_PHP), ("index.html", GUESTBOOK_HTML)):
        with open(f"{root}/{name}", "w") as fh:
            fh.write(text)
    os.chdir(root)
    os.environ.setdefault("PHP_CLI_SERVER_WORKERS", "2")  # Apache with mod_php serves in parallel too
    _exec(["/usr/bin/php", "-S", "0.0.0.0:80", "-t", root])
