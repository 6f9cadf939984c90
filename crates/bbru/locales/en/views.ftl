# The views: content, forms, contents, history, undo, security, users, login (bbru, English).

add-label = Add:
add-heading = Add { $kind }
edit-heading = Edit { $title }
folder-empty = This folder is empty.
download = Download { $filename }
creator-unknown = unknown
byline = Created by { $creator } on { $created }, modified { $modified }
page-not-html = This page cannot be shown as HTML: { $reason }.

field-name = Name
field-name-help = Part of the address (URL); made from the title if left empty.
field-title = Title
field-description = Description
field-description-help = A sentence or two, shown in listings and search results.
field-body = Body
field-body-help = Markdown: *emphasis*, **strong**, # headings, - lists, [links](https://example.org).
field-file = File
field-login = Login
field-password = Password
field-password-again = Password again
field-again = Again
field-current-password = Current password
field-new-password = New password
field-new-password-again = New password again

merge-changed = Someone else changed this since you opened it
merge-saved-at = (saved { $time }). Your changes have not been saved.
merge-how = Their version is shown below; your text is in the form. Merge the two in the form and save again.
merge-file-dropped = The file you chose was not kept: choose it again if you still want to replace theirs.
preview-heading = Preview
preview-button = Preview
merge-theirs = Their version
merge-mine = Your version
merge-body = Body

contents-heading = Contents of { $title }
contents-clipboard-cut = Clipboard: { $count ->
    [one] { $count } item cut:
   *[other] { $count } items cut:
}
contents-clipboard-copied = Clipboard: { $count ->
    [one] { $count } item copied:
   *[other] { $count } items copied:
}
contents-clipboard-tampered = The clipboard was changed outside this site and will not be used; cut or copy the items again.
contents-none-visible = This folder has no items you may see.
contents-name = Name
contents-type = Type
contents-modified = Modified
contents-size = Size
contents-batch = Items { $first }–{ $last } of { $total }.
contents-previous = Previous
contents-next = Next
contents-rename = Rename
contents-cut = Cut
contents-copy = Copy
contents-paste = Paste
contents-delete = Delete
contents-move = Move selected:
contents-move-top = To top
contents-move-up = Up
contents-move-down = Down
contents-move-bottom = To bottom
rename-heading = Rename items
rename-current = Current name
rename-new = New name
rename-new-for = New name for { $name }

history-heading = History of { $title }
history-version-title = Version of { $title }
history-intro = Each change saved a version; the newest is first. Open one to see it and, if you may edit, to revert to it.
history-view = View
history-current = (current)
history-changes = Changes
history-only-recent = Only the { $count } most recent versions are listed.
history-anonymous = (anonymous)
history-order = Order of the items: { $order }
history-modified = Modified { $time }
history-looking-at = You are looking at the version of
history-saved-by = saved by { $user }
history-read-only = It is read-only.
history-folder-revert-note = Reverting a folder restores its title, description and the order of its items. It does not bring back items deleted since (the items are a separate object): use the site-wide Undo for that.
history-revert = Revert to this version
history-back = Back to the history

undo-heading = Undo
undo-intro = The most recent transactions of the whole site, newest first. The chosen ones are undone together, in one new transaction: all of them, or none if one of them cannot be undone (when later changes touched the same objects, undo those too, or first).
undo-button = Undo the chosen transactions
undo-the-transaction = the transaction
undo-transaction-name = { $what } of { $time } by { $user }

security-heading = Security of { $title }
security-your-roles = Your roles here:
security-no-roles = none
security-intro-where = Roles granted here apply to
security-intro-rest = and everything inside it, unless a setting further down says otherwise; the nearest setting wins, and a principal's own setting wins over its groups'.
security-intro-roles = Manager may do everything, Editor add, change and delete content, Member view it.
security-here = Settings on this object
security-principal = Principal
security-add-principal = Add a principal
security-add-principal-option = (add a principal)
security-none-here = No settings on this object yet.
security-inherited = Inherited settings
security-none-inherited = None: the containers above have no settings.
security-on = On
security-allow = Allow
security-deny = Deny
security-unset = Unset
security-everybody = everybody (anonymous visitors too)
security-authenticated = every logged-in user
security-unknown-principal = { $principal } (unknown: no such user or group)

users-heading = Users and groups
users-roles-elsewhere = Roles are not granted here: give a user or a group a role on the
users-roles-link = security page of the site root
users-roles-as = (or of any folder or item), where they appear as
users-users = Users
users-none = No users yet.
users-groups = Groups
users-no-groups = No groups yet.
users-change = Change
users-change-user = Change { $login }
users-set-password = Change the password
users-set-password-note = (logs { $login } out everywhere)
users-delete = Delete { $name }
users-add-user = Add a user
users-add-user-button = Add user
users-full-name = Title (full name)
users-id-help = 1 to 64 of a–z, 0–9, '.', '_', '-'.
users-group-id = Id
users-members = Members
users-add-group = Add a group
users-add-group-button = Add group

login-wrong = Wrong login or password.
password-heading = Change your password
password-intro = Changing it logs { $login } out everywhere else; this browser stays logged in.
password-min = At least { $min } characters.
password-button = Change my password
password-bootstrap = The bootstrap manager's password is set in the site configuration (etc/site.toml), not here.
password-current-wrong = The current password is wrong.

## Publication states
publication-state = State:
publication-private-label = Private: only editors see it.
publication-published-label = Published: visible to everyone who may view this folder.
publication-publish = Publish
publication-retract = Make private
publication-private-marker = private
publication-legend = State
publication-choice-private = Private (only editors see it until it is published)
publication-choice-published = Published
publication-error-not-editor = You may not edit here, so you could not see a private item: add it published.
publication-error-root = The site root is always published; to close the site to visitors, change its security.
publication-error-choose = Choose a state: “private” or “published”.

## Images, feeds, recent changes
image-original = Original image
image-no-scale = This image has no { $name } scale: { $error }.
feeds-changes = Recent changes
feeds-atom = Atom feed
changes-title = Recent changes in { $title }
changes-none = No recent changes you may see.
changes-when = When
changes-who = Who
changes-what = What
changes-open = Open
diff-title = Changes of { $title }
diff-same = The text is the same.
diff-unavailable = That change did not change this page's text (it was renamed, moved or its grants changed), or it is too old to compare.
diff-from-to = From { $from } to { $to }.
diff-first = From nothing (the first version) to { $to }.
diff-history = History

## Search
search-title = Search
search-for = Search for
search-index-missing = The search index is missing: run bbru reindex.
search-index-incomplete = The search index is incomplete: run bbru reindex.
search-results = Results: { $count }
search-best-found = (the best found)
search-error-too-long = The query is longer than { $max } bytes; search for a few words.
search-error-too-many = The query has more than { $max } different words; search for fewer.
