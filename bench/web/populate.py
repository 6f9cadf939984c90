"""Create the web benchmark's content on a running bbru instance.

    python3 bench/web/populate.py BASE_URL LOGIN PASSWORD [--pages N]

Creates, as LOGIN (the bootstrap manager):

- /page: a Page whose body is a few paragraphs of Markdown (a heading, a
  list, emphasis, a link: about 1.5 KB of source);
- /folder: a Folder holding N (default 100) Pages, folder-000 ... titled
  "Page 0" ..., each with a one-line description and a short body.

Through the JSON API (POST to the folder with Accept and Content-Type
application/json and HTTP Basic auth, as plone.restapi does) when the site
answers JSON at `GET /` with Accept: application/json; otherwise through
the HTML forms (log in at /@@login, post /@@add with the CSRF token).
Then checks that /page shows the page and /folder lists all N pages.
Prints which way it used. Exits non-zero, with the answer, if a creation
is refused or the check fails.

Standard library only: it runs with any python3.
"""
import argparse
import base64
import http.cookiejar
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

BODY = """# Welcome

This page is what the benchmark views: a heading, some paragraphs, a
list and a link, rendered from **Markdown** and sanitised at every view.

- It is read by anonymous visitors: the site is public.
- Each view is one transaction: traverse from the root, check the
  permission, render the page around the body.
- Nothing is cached between requests but the objects themselves.

A [link to the folder](/folder) and *some emphasis*, then more text to
make the body the size of a short article. Lorem ipsum dolor sit amet,
consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et
dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation
ullamco laboris nisi ut aliquip ex ea commodo consequat.

Duis aute irure dolor in reprehenderit in voluptate velit esse cillum
dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non
proident, sunt in culpa qui officia deserunt mollit anim id est laborum.
"""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fail(what, error):
    body = error.read().decode('utf-8', 'replace') if hasattr(error, 'read') else ''
    sys.exit(f'populate.py: {what}: {error}\n{body[:2000]}')


class Forms:
    """Logged in through the form; posts the add form with the CSRF token."""

    name = 'HTML forms (/@@login, /@@add)'

    def __init__(self, base, login, password):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect)
        self.token = self.csrf()
        self.post('/@@login', {'login': login, 'password': password, 'came_from': '/'},
                  'log in')
        self.token = self.csrf()

    def csrf(self):
        html = self.opener.open(self.base + '/@@login').read().decode()
        m = re.search(r'name="_csrf" value="([^"]+)"', html)
        if not m:
            sys.exit('populate.py: no CSRF field on /@@login')
        return m.group(1)

    def post(self, path, fields, what):
        data = urllib.parse.urlencode({**fields, '_csrf': self.token}).encode()
        try:
            self.opener.open(urllib.request.Request(self.base + path, data=data))
        except urllib.error.HTTPError as e:
            if e.code != 303:
                fail(what, e)
            return
        sys.exit(f'populate.py: {what}: expected a redirect (303), got 200')

    def add(self, folder, kind, name, title, description='', body=''):
        self.post(f'{folder}/@@add',
                  {'type': kind, 'id': name, 'title': title,
                   'description': description, 'body': body},
                  f'add {kind} {folder}/{name}')


class Api:
    """The JSON API with HTTP Basic auth."""

    name = 'JSON API (POST application/json, HTTP Basic auth)'

    def __init__(self, base, login, password):
        self.base = base
        token = base64.b64encode(f'{login}:{password}'.encode()).decode()
        self.headers = {'Accept': 'application/json',
                        'Content-Type': 'application/json',
                        'Authorization': f'Basic {token}'}

    @staticmethod
    def available(base):
        request = urllib.request.Request(base + '/', headers={'Accept': 'application/json'})
        try:
            with urllib.request.urlopen(request) as r:
                return r.status == 200 and isinstance(json.load(r), dict)
        except (urllib.error.HTTPError, ValueError):
            return False

    def add(self, folder, kind, name, title, description='', body=''):
        fields = {'@type': kind, 'id': name, 'title': title, 'description': description}
        if kind == 'Page':
            fields['body'] = body
        request = urllib.request.Request(self.base + (folder or '/'),
                                         data=json.dumps(fields).encode(),
                                         headers=self.headers, method='POST')
        try:
            with urllib.request.urlopen(request) as r:
                if r.status not in (200, 201):
                    sys.exit(f'populate.py: add {kind} {folder}/{name}: {r.status}')
        except urllib.error.HTTPError as e:
            fail(f'add {kind} {folder}/{name}', e)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('base')
    parser.add_argument('login')
    parser.add_argument('password')
    parser.add_argument('--pages', type=int, default=100)
    args = parser.parse_args()
    base = args.base.rstrip('/')
    way = (Api if Api.available(base) else Forms)(base, args.login, args.password)
    print(f'populate.py: creating the content through the {way.name}', file=sys.stderr)
    way.add('', 'Page', 'page', 'Welcome', 'The page the benchmark views', BODY)
    way.add('', 'Folder', 'folder', 'A folder of pages', f'{args.pages} pages')
    for i in range(args.pages):
        way.add('/folder', 'Page', f'folder-{i:03d}', f'Page {i}',
                f'Description of page {i}', f'The body of page {i}.')
    check(base, args.pages)
    print(way.name)


def check(base, pages):
    """What the benchmark will request: the page, and a listing of every page."""
    page = urllib.request.urlopen(base + '/page').read().decode()
    if '<h1>Welcome</h1>' not in page:
        sys.exit(f'populate.py: /page does not show the page:\n{page[:2000]}')
    listing = urllib.request.urlopen(base + '/folder').read().decode()
    # Distinct links: the section navigation links to some of the pages too.
    listed = len(set(re.findall(r'href="/folder/folder-\d{3}"', listing)))
    if listed != pages:
        sys.exit(f'populate.py: /folder lists {listed} pages, not {pages}')


if __name__ == '__main__':
    main()
