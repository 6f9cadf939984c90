# Макет страницы, общие слова, форматы (bbru, русский).

skip-to-content = Перейти к содержимому
home = Главная
breadcrumbs = Путь к странице
manage-tabs = Управление объектом
sections = Разделы
nav-more = Ещё…
language-switch = Язык
search-label = Поиск по сайту
search-placeholder = Поиск…
search-button = Найти
logged-in-as = Вы вошли как
password-link = Пароль
log-in = Войти
log-out = Выйти
footer-powered = сайт на BlueBream, пересобранный на Rust
back-home = На главную страницу
not-found-hint = Если вы ожидали найти здесь что-то, возможно, нужно
not-found-hint-login = войти на сайт.

tab-view = Просмотр
tab-contents = Содержимое
tab-edit = Правка
tab-security = Доступ
tab-history = История
tab-undo = Отмена
tab-users = Пользователи

kind-folder = Папка
kind-page = Страница
kind-file = Файл
kind-image = Изображение

button-add = Добавить
button-save = Сохранить
button-cancel = Отмена

column-when = Когда
column-who = Кто
column-what = Что
column-actions = Действия
column-choose = Выбор

notice-added = Добавлено: { $kind }.
notice-saved = Изменения сохранены.
notice-reverted = Восстановлена выбранная версия.
notice-reverted-folder = Восстановлена выбранная версия. Удалённые элементы так не возвращаются: для них воспользуйтесь отменой.
notice-undone = Готово: отмена — самая новая транзакция в списке ниже.
notice-unchanged = Ничего не изменилось.
notice-grants-saved = Права сохранены.
notice-user-added = Пользователь добавлен.
notice-user-changed = Пользователь изменён.
notice-password-set = Пароль изменён; сеансы пользователя завершены везде.
notice-user-deleted = Пользователь удалён.
notice-group-added = Группа добавлена.
notice-group-deleted = Группа удалена.
notice-renamed = Переименовано.
notice-nothing-renamed = Ничего не переименовано: имена не изменились.
notice-cut = Вырезано; вставьте в папку, куда элементы нужно перенести.
notice-copied = Скопировано; вставьте в папку, куда нужно поместить копии.
notice-pasted = Вставлено.
notice-deleted = Удалено.
notice-order-changed = Порядок изменён.
notice-order-unchanged = Порядок не изменился.
notice-password-changed = Ваш пароль изменён; другие ваши сеансы завершены.
notice-published = Опубликовано: теперь это видят все, кому открыта папка.
notice-retracted = Закрыто: теперь это видят только редакторы.

count-items = { $count ->
    [one] { $count } элемент
    [few] { $count } элемента
   *[many] { $count } элементов
}
size-bytes = { $count ->
    [one] { $count } байт
    [few] { $count } байта
   *[many] { $count } байт
}
size-kb = { $value } КБ
size-mb = { $value } МБ
size-gb = { $value } ГБ

date-time = { $day } { $month } { $year } г., { $time } UTC
month-1 = января
month-2 = февраля
month-3 = марта
month-4 = апреля
month-5 = мая
month-6 = июня
month-7 = июля
month-8 = августа
month-9 = сентября
month-10 = октября
month-11 = ноября
month-12 = декабря
