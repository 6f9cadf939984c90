# Error pages and messages shown to users (bbru, English).  The JSON API answers in
# English whatever the language, from the same English texts.

status-400 = Bad Request
status-401 = Unauthorized
status-403 = Forbidden
status-404 = Not Found
status-405 = Method Not Allowed
status-408 = Request Timeout
status-409 = Conflict
status-412 = Precondition Failed
status-413 = Payload Too Large
status-429 = Too Many Requests
status-500 = Internal Server Error
status-503 = Service Unavailable

error-not-found = Not found.
error-forbidden = You are not allowed to do this here.
error-unauthorized = Please log in.
error-method-not-allowed = Method not allowed.
error-too-many-logins = Too many failed logins; wait a few minutes.
error-not-set-up = This site has not been set up yet: declare the bootstrap manager in { $path } (see the comments there) and restart.
error-conflict = Someone else changed this at the same time; please try again.
error-internal = Internal error; it has been logged.
error-unavailable = The database is out of reach at the moment; please try again shortly.
error-lock-timeout = Someone else is saving this at the same moment and has not finished; please try again in a moment.
error-csrf = the form has expired or did not come from this site (CSRF check failed); reload the page and try again
error-too-large = The request is larger than this site accepts.
error-timeout = The request took too long to arrive.
error-busy = The server is busy at the moment; please try again shortly.
error-unknown-type = unknown content type
error-unknown-language = Unknown language: choose English (en) or Russian (ru).

edit-error-invalid-name = { $name } is not a valid name: use letters, digits, '-', '_' and '.', not starting with '.' or '@', at most 100 characters
edit-error-name-taken = an item named { $name } already exists here
edit-error-title-required = a title is required
edit-error-title-too-long = the title is longer than 200 characters
edit-error-upload-required = a { $kind } needs an uploaded file
edit-error-not-an-image = the uploaded file is not an image this site accepts (PNG, JPEG, GIF or WebP)
body-too-large = the page body has { $size } bytes; a page holds at most { $max }
body-too-deep = the page body nests HTML elements { $depth } deep; at most { $max } levels are allowed (close the tags you open)

edit-error-content-type = { $value } is not a valid content type: give a MIME type such as "text/plain" or "application/pdf; charset=utf-8"
edit-error-filename = { $name } is not a valid file name: it must be 1 to { $max } characters, without control characters (such as line breaks)
contents-clipboard-full = Too many items to put on the clipboard at once ({ $count }): the clipboard is kept in a browser cookie. Select fewer items.
contents-no-item = There is no item { $name } in this folder (it may have been renamed, moved or deleted meanwhile); reload the page.
contents-select = Select at least one item first.
contents-no-action = No action was chosen: use one of the buttons under the listing.
contents-unknown-action = { $action } is not an action of the contents view.
contents-rename-count = Give one new name for each item to rename.
contents-rename-taken = Cannot rename { $old } to { $new }: an item named { $new } already exists here.
contents-gone = There is no item { $name } in this folder any more; reload the page.
contents-clipboard-empty = The clipboard is empty: cut or copy items first.
contents-clipboard-refused = The clipboard was changed outside this site and is refused; cut or copy the items again.
contents-source-gone = { $url } is no longer there (it was moved, renamed or deleted since it was put on the clipboard).
contents-root-paste = The site root cannot be pasted.
contents-into-itself = { $url } cannot be moved into itself or into one of its own subfolders ({ $location }).
contents-no-longer-there = { $url } is no longer there.
contents-copy-hidden = { $url } cannot be copied: it holds { $hidden }, which you may not see.
contents-reorder-too-many = This folder holds { $count } items; only folders of at most { $max } items can be arranged by hand (larger ones list their items by name).

history-wrong-kind = The version { $version } is not a { $kind }; it cannot be shown or reverted to.
history-bad-version = { $version } is not a version: versions are named by 16 hexadecimal digits.
history-choose-version = Choose a version to revert to (from the history).
history-no-such-version = This object has no version { $version }; reload its history.

undo-bad-tid = { $tid } is not a transaction of the undo list; reload the page.
undo-choose = Choose at least one transaction to undo.
undo-too-many = Choose at most { $max } transactions to undo at a time.
undo-not-in-log = The transaction { $tid } cannot be undone (it is not in the undo log, or no longer); reload the page.
undo-refused-root = Nothing was undone: { $what } cannot be undone, because it created the database or the site itself.
undo-refused-later = Nothing was undone: { $what } cannot be undone, because later transactions changed the same objects ({ $reasons }). Undo those later transactions first, or together with it.
undo-failed = Nothing was undone: the undo failed ({ $reasons }).

security-bad-role = { $role } is not a role that can be granted.
security-bad-setting = { $setting } is not a setting: use Allow, Deny or Unset.
security-bad-field = { $field } is not a grant field.
security-not-principal = { $principal } is not a user or group of this site.
security-only-unset = { $principal } is not a user or group of this site; only its existing settings can be unset.
security-lockout = This change would take away your own right to manage security on { $location }, so it was not made. Keep a role that includes it (Manager), or have another manager make the change.

password-too-short = The password must have at least { $min } characters.
password-differ = The two passwords differ; type the same password twice.
users-no-group = There is no group { $id }.
users-no-user = There is no user { $login }.
users-no-action = No action was chosen: use one of the forms of the page.
users-unknown-action = { $action } is not an action of the users page.
users-bad-login = The login must be 1 to 64 characters among lower-case letters, digits, '.', '_' and '-'.
users-bootstrap-login = { $login } is the login of the bootstrap manager; choose another.
users-user-exists = A user { $login } already exists.
users-delete-self = You cannot delete your own account; ask another user manager.
users-bad-group-id = The group id must be 1 to 64 characters among lower-case letters, digits, '.', '_' and '-'.
users-reserved-group = { $id } is the id of a built-in group; choose another.
users-group-exists = A group { $id } already exists.
