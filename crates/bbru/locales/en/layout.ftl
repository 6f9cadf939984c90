# The page layout, shared words, formats (bbru, English).

skip-to-content = Skip to content
home = Home
breadcrumbs = Breadcrumbs
manage-tabs = Manage this item
sections = Sections
nav-more = More…
language-switch = Language
search-label = Search the site
search-placeholder = Search…
search-button = Search
logged-in-as = Logged in as
password-link = Password
log-in = Log in
log-out = Log out
footer-powered = a BlueBream site, rebuilt in Rust
back-home = Go to the home page
not-found-hint = If you expected something here, it may need you to
not-found-hint-login = log in.

tab-view = View
tab-contents = Contents
tab-edit = Edit
tab-security = Security
tab-history = History
tab-undo = Undo
tab-users = Users

kind-folder = Folder
kind-page = Page
kind-file = File
kind-image = Image

button-add = Add
button-save = Save
button-cancel = Cancel

column-when = When
column-who = Who
column-what = What
column-actions = Actions
column-choose = Choose

notice-added = { $kind } added.
notice-saved = Changes saved.
notice-reverted = Reverted to the chosen version.
notice-reverted-folder = Reverted to the chosen version. Deleted items are not brought back by this: use Undo for them.
notice-undone = Done: the undo is the newest transaction below.
notice-unchanged = Nothing changed.
notice-grants-saved = Grants saved.
notice-user-added = User added.
notice-user-changed = User changed.
notice-password-set = Password changed; the user was logged out everywhere.
notice-user-deleted = User deleted.
notice-group-added = Group added.
notice-group-deleted = Group deleted.
notice-renamed = Renamed.
notice-nothing-renamed = Nothing was renamed: the names are unchanged.
notice-cut = Cut; paste into the folder the items should move to.
notice-copied = Copied; paste into the folder the copies should go to.
notice-pasted = Pasted.
notice-deleted = Deleted.
notice-order-changed = Order changed.
notice-order-unchanged = The order is unchanged.
notice-password-changed = Your password was changed; your other sessions were logged out.
notice-published = Published: readers who may view this folder see it now.
notice-retracted = Made private: only editors see it now.

count-items = { $count ->
    [one] { $count } item
   *[other] { $count } items
}
size-bytes = { $count ->
    [one] { $count } byte
   *[other] { $count } bytes
}
size-kb = { $value } KB
size-mb = { $value } MB
size-gb = { $value } GB

date-time = { $day } { $month } { $year }, { $time } UTC
month-1 = January
month-2 = February
month-3 = March
month-4 = April
month-5 = May
month-6 = June
month-7 = July
month-8 = August
month-9 = September
month-10 = October
month-11 = November
month-12 = December
