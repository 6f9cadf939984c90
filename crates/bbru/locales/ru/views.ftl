# Представления: содержимое, формы, управление папкой, история, отмена, доступ,
# пользователи, вход (bbru, русский).

add-label = Добавить:
add-heading = Добавить: { $kind }
edit-heading = Правка: { $title }
folder-empty = Папка пуста.
download = Скачать { $filename }
creator-unknown = неизвестно
byline = Автор: { $creator }; создано { $created }, изменено { $modified }
page-not-html = Эту страницу нельзя показать как HTML: { $reason }.

field-name = Имя
field-name-help = Часть адреса (URL); если оставить пустым, будет составлено из заголовка.
field-title = Заголовок
field-description = Описание
field-description-help = Одно-два предложения; показываются в списках и результатах поиска.
field-body = Текст
field-body-help = Markdown: *курсив*, **полужирный**, # заголовки, - списки, [ссылки](https://example.org).
field-file = Файл
field-login = Логин
field-password = Пароль
field-password-again = Пароль ещё раз
field-again = Ещё раз
field-current-password = Текущий пароль
field-new-password = Новый пароль
field-new-password-again = Новый пароль ещё раз

merge-changed = Кто-то другой изменил этот объект, пока вы его редактировали
merge-saved-at = (сохранено { $time }). Ваши изменения не сохранены.
merge-how = Их версия показана ниже, ваш текст — в форме. Объедините их в форме и сохраните снова.
merge-file-dropped = Выбранный вами файл не сохранён: выберите его снова, если всё ещё хотите заменить им их файл.
preview-heading = Предварительный просмотр
preview-button = Просмотр
merge-theirs = Их версия
merge-mine = Ваша версия
merge-body = Текст

contents-heading = Содержимое: { $title }
contents-clipboard-cut = В буфере обмена { $count ->
    [one] { $count } вырезанный элемент:
    [few] { $count } вырезанных элемента:
   *[many] { $count } вырезанных элементов:
}
contents-clipboard-copied = В буфере обмена { $count ->
    [one] { $count } скопированный элемент:
    [few] { $count } скопированных элемента:
   *[many] { $count } скопированных элементов:
}
contents-clipboard-tampered = Буфер обмена был изменён вне этого сайта и использоваться не будет; вырежьте или скопируйте элементы заново.
contents-none-visible = В этой папке нет элементов, которые вам можно видеть.
contents-name = Имя
contents-type = Тип
contents-modified = Изменено
contents-size = Размер
contents-batch = Элементы { $first }–{ $last } из { $total }.
contents-previous = Назад
contents-next = Далее
contents-rename = Переименовать
contents-cut = Вырезать
contents-copy = Копировать
contents-paste = Вставить
contents-delete = Удалить
contents-move = Переместить выбранное:
contents-move-top = В начало
contents-move-up = Выше
contents-move-down = Ниже
contents-move-bottom = В конец
rename-heading = Переименование
rename-current = Текущее имя
rename-new = Новое имя
rename-new-for = Новое имя для { $name }

history-heading = История: { $title }
history-version-title = Версия: { $title }
history-intro = Каждое изменение сохраняет версию; самая новая — первая. Откройте версию, чтобы посмотреть её и, если у вас есть право правки, вернуться к ней.
history-view = Открыть
history-current = (текущая)
history-changes = Изменения
history-only-recent = Показаны только последние версии: { $count }.
history-anonymous = (аноним)
history-order = Порядок элементов: { $order }
history-modified = Изменено { $time }
history-looking-at = Вы смотрите версию от
history-saved-by = сохранил(а) { $user }
history-read-only = Она только для чтения.
history-folder-revert-note = Возврат папки к версии восстанавливает её заголовок, описание и порядок элементов. Удалённые с тех пор элементы он не возвращает (элементы — отдельный объект): для этого воспользуйтесь отменой на уровне сайта.
history-revert = Вернуться к этой версии
history-back = Назад к истории

undo-heading = Отмена
undo-intro = Последние транзакции всего сайта, новые сверху. Выбранные отменяются вместе, одной новой транзакцией: все сразу или ни одна, если хотя бы одну отменить нельзя (когда более поздние изменения затронули те же объекты, отмените и их — вместе или сначала).
undo-button = Отменить выбранные транзакции
undo-the-transaction = транзакцию
undo-transaction-name = { $what } от { $time }, автор { $user }

security-heading = Доступ: { $title }
security-your-roles = Ваши роли здесь:
security-no-roles = нет
security-intro-where = Роли, выданные здесь, действуют для
security-intro-rest = и всего, что внутри, если ниже не указано иное; действует ближайшая настройка, а собственная настройка участника важнее настроек его групп.
security-intro-roles = Manager может всё, Editor добавляет, меняет и удаляет содержимое, Member просматривает его.
security-here = Настройки этого объекта
security-principal = Участник
security-add-principal = Добавить участника
security-add-principal-option = (добавить участника)
security-none-here = У этого объекта пока нет настроек.
security-inherited = Унаследованные настройки
security-none-inherited = Нет: у папок выше настроек нет.
security-on = Где
security-allow = Разрешить
security-deny = Запретить
security-unset = Не задано
security-everybody = все (включая анонимных посетителей)
security-authenticated = все вошедшие пользователи
security-unknown-principal = { $principal } (неизвестен: нет такого пользователя или группы)

users-heading = Пользователи и группы
users-roles-elsewhere = Роли выдаются не здесь: назначьте пользователю или группе роль на
users-roles-link = странице доступа корня сайта
users-roles-as = (или любой папки или объекта), где они обозначены как
users-users = Пользователи
users-none = Пользователей пока нет.
users-groups = Группы
users-no-groups = Групп пока нет.
users-change = Изменить
users-change-user = Изменить { $login }
users-set-password = Сменить пароль
users-set-password-note = (все сеансы { $login } будут завершены)
users-delete = Удалить { $name }
users-add-user = Новый пользователь
users-add-user-button = Добавить пользователя
users-full-name = Заголовок (полное имя)
users-id-help = От 1 до 64 символов: a–z, 0–9, «.», «_», «-».
users-group-id = Идентификатор
users-members = Участники
users-add-group = Новая группа
users-add-group-button = Добавить группу

login-wrong = Неверный логин или пароль.
password-heading = Смена пароля
password-intro = После смены пароля все остальные сеансы { $login } будут завершены; в этом браузере вы останетесь в системе.
password-min = Не менее { $min } символов.
password-button = Сменить пароль
password-bootstrap = Пароль начального администратора задаётся в конфигурации сайта (etc/site.toml), а не здесь.
password-current-wrong = Текущий пароль неверен.

## Publication states
publication-state = Состояние:
publication-private-label = Закрыто: видят только редакторы.
publication-published-label = Опубликовано: видно всем, кому открыта эта папка.
publication-publish = Опубликовать
publication-retract = Закрыть
publication-private-marker = закрыто
publication-legend = Состояние
publication-choice-private = Закрыто (до публикации видят только редакторы)
publication-choice-published = Опубликовано
publication-error-not-editor = Вы не можете редактировать здесь и не увидели бы закрытый элемент: добавьте его опубликованным.
publication-error-root = Корень сайта всегда опубликован; чтобы закрыть сайт от посетителей, измените его права доступа.
publication-error-choose = Выберите состояние: «private» или «published».

## Images, feeds, recent changes
image-original = Исходное изображение
image-no-scale = У этого изображения нет размера { $name }: { $error }.
feeds-changes = Последние изменения
feeds-atom = Лента Atom
changes-title = Последние изменения в «{ $title }»
changes-none = Нет недавних изменений, которые вам видны.
changes-when = Когда
changes-who = Кто
changes-what = Что
changes-open = Открыть
diff-title = Изменения «{ $title }»
diff-same = Текст не изменился.
diff-unavailable = Это изменение не затронуло текст страницы (её переименовали, переместили или изменили права доступа) или оно слишком старое для сравнения.
diff-from-to = С { $from } по { $to }.
diff-first = От пустой страницы (первая версия) до { $to }.
diff-history = История

## Search
search-title = Поиск
search-for = Что искать
search-index-missing = Поискового указателя нет: выполните bbru reindex.
search-index-incomplete = Поисковый указатель неполон: выполните bbru reindex.
search-results = Найдено: { $count }
search-best-found = (лучшие из найденного)
search-error-too-long = Запрос длиннее { $max } байт; ищите по нескольким словам.
search-error-too-many = В запросе больше { $max } разных слов; ищите по меньшему числу слов.
