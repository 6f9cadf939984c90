//! `search-bench`: full-text search over a generated site of 100,000 pages of Russian
//! and English text (bench/search/run.sh; BENCHMARKS.md, "Search").
//!
//! Generation goes through the application's own path: `bbru::model::edit::create`,
//! which indexes each page in its transaction (the hooks every view uses), pages in
//! folders of 1,000, many pages per transaction, on a FileStorage.  The text is drawn
//! from a Zipf distribution over a vocabulary of real words (the most frequent ones,
//! "и", "the", and mid-frequency ones such as "установка", "install") and generated
//! word forms of Russian and English shapes, with Russian inflections.  A fixed seed
//! makes every run the same site.
//!
//! Then the database is closed, opened again, and each query is timed once cold (its
//! postings read from the file) and `--repeat` times warm, through
//! `bbru::search::query::search` as an anonymous reader (permission checks included),
//! first page of 20 results with snippets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use bbru::model::edit::{self, Fields};
use bbru::model::{ContentRef, Folder, Kind, Site};
use bbru::security::{EVERYBODY, Principal, Role, Setting};
use zodb::{DB, PRef};
use zodb_storage::{FileStorage, Storage};

#[derive(Debug, Parser)]
struct Args {
    /// The Data.fs to make (removed first) or, with --reuse, to query.
    #[arg(long)]
    file: PathBuf,
    /// Pages to generate.
    #[arg(long, default_value_t = 100_000)]
    pages: usize,
    /// Pages per folder.
    #[arg(long, default_value_t = 1_000)]
    folder_size: usize,
    /// Pages per transaction while generating.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Warm runs per query.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Query the existing file instead of generating one.
    #[arg(long)]
    reuse: bool,
}

/// Frequent real words, most frequent first (they take the top Zipf ranks).
const RU_COMMON: &[&str] = &[
    "и", "в", "не", "на", "что", "с", "как", "по", "это", "для", "из", "у", "о", "же", "так",
];
const EN_COMMON: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "for", "that", "with", "on", "as", "it", "by", "this",
];
/// Real words of middle frequency (the queries use some), each with its forms.
const RU_WORDS: &[&[&str]] = &[
    &["установка", "установки", "установку", "установкой"],
    &["сервер", "сервера", "серверу", "серверы"],
    &["настройка", "настройки", "настройку"],
    &["база", "базы", "базе", "базу"],
    &["страница", "страницы", "страниц"],
    &["пользователь", "пользователя", "пользователи"],
    &["документ", "документы", "документов"],
    &["поиск", "поиска", "поиском"],
    &["самовар", "самовары", "самовара"],
];
const EN_WORDS: &[&[&str]] = &[
    &["install", "installing", "installed", "installs"],
    &["server", "servers"],
    &["configuration", "configure", "configured"],
    &["database", "databases"],
    &["page", "pages"],
    &["user", "users"],
    &["search", "searching", "searched"],
    &["document", "documents"],
];
const RU_SYLLABLES: &[&str] = &[
    "ка", "ло", "ми", "ра", "то", "не", "ви", "ста", "про", "за", "до", "бе", "ры", "шу", "го",
    "де", "жи", "ко", "лу", "мо", "пе", "си", "тру", "фо", "хи", "це", "чу", "ща", "вя", "зе",
];
const RU_ENDINGS: &[&str] = &["а", "ы", "у", "ой", "ов", "ами", "е", "ом", "ия", "ость"];
const EN_SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "to", "ne", "vi", "sta", "pro", "ter", "den", "bel", "cor", "fan",
    "gil", "hum", "jor", "lex", "mar", "nor", "pel", "quin", "ros", "sul", "tam", "ux", "vor",
];
const EN_ENDINGS: &[&str] = &["", "s", "ing", "ed", "er", "ly", "tion"];

/// A vocabulary of one language: word forms by Zipf rank (each rank a lexeme whose
/// forms are drawn evenly).
struct Vocabulary {
    lexemes: Vec<Vec<String>>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(
        rng: &mut StdRng,
        common: &[&str],
        words: &[&[&str]],
        syllables: &[&str],
        endings: &[&str],
        size: usize,
    ) -> Vocabulary {
        let mut lexemes: Vec<Vec<String>> = common.iter().map(|w| vec![w.to_string()]).collect();
        let mut made = 0usize;
        while lexemes.len() < size {
            // The real words at ranks 100, 200, …: middle frequency.
            if lexemes.len().is_multiple_of(100) && made < words.len() {
                lexemes.push(words[made].iter().map(|w| w.to_string()).collect());
                made += 1;
                continue;
            }
            let n = rng.random_range(2..=4);
            let stem: String = (0..n)
                .map(|_| syllables[rng.random_range(0..syllables.len())])
                .collect();
            lexemes.push(endings.iter().map(|e| format!("{stem}{e}")).collect());
        }
        let mut total = 0.0;
        let cumulative = (1..=lexemes.len())
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Vocabulary {
            lexemes,
            cumulative,
        }
    }

    fn word(&self, rng: &mut StdRng) -> &str {
        let total = *self.cumulative.last().expect("a vocabulary");
        let x = rng.random::<f64>() * total;
        let rank = self
            .cumulative
            .partition_point(|c| *c < x)
            .min(self.lexemes.len() - 1);
        let forms = &self.lexemes[rank];
        &forms[rng.random_range(0..forms.len())]
    }

    fn words(&self, rng: &mut StdRng, n: usize) -> String {
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push_str(if i % 12 == 0 { ". " } else { " " });
            }
            out.push_str(self.word(rng));
        }
        out
    }
}

fn generate(args: &Args) -> Result<()> {
    bbru_bench::remove_storage_files(&args.file)?;
    let storage = Arc::new(FileStorage::open(&args.file).context("creating the FileStorage")?);
    let db = DB::open(storage.clone())?;
    let mut rng = StdRng::seed_from_u64(17);
    let ru = Vocabulary::new(
        &mut rng,
        RU_COMMON,
        RU_WORDS,
        RU_SYLLABLES,
        RU_ENDINGS,
        30_000,
    );
    let en = Vocabulary::new(
        &mut rng,
        EN_COMMON,
        EN_WORDS,
        EN_SYLLABLES,
        EN_ENDINGS,
        30_000,
    );
    let mut conn = db.connection();
    let started = Instant::now();
    let mut folders: Vec<PRef<Folder>> = Vec::new();
    {
        let tx = conn.begin();
        let site = Site::create(&tx, "Bench", "bench", 0.0)?;
        let root = tx.get(site)?.content;
        tx.update(root, |f| {
            f.meta
                .grants
                .set(EVERYBODY, Role::Member, Some(Setting::Allow));
        })?;
        for n in 0..args.pages.div_ceil(args.folder_size) {
            let fields = Fields {
                title: Some(format!("Раздел {n} section")),
                ..Fields::default()
            };
            let (_, r) = edit::create(
                &tx,
                root,
                &format!("f{n}"),
                Kind::Folder,
                fields,
                "bench",
                0.0,
            )?;
            let ContentRef::Folder(f) = r else {
                unreachable!("a folder was created")
            };
            folders.push(f);
        }
        tx.commit()?;
    }
    let mut done = 0;
    while done < args.pages {
        let tx = conn.begin();
        let end = (done + args.batch).min(args.pages);
        for n in done..end {
            let v = if n.is_multiple_of(2) { &ru } else { &en };
            let (title, description, body) = (
                rng.random_range(3..=6),
                rng.random_range(8..=12),
                rng.random_range(80..=150),
            );
            let fields = Fields {
                title: Some(v.words(&mut rng, title)),
                description: Some(v.words(&mut rng, description)),
                body: Some(v.words(&mut rng, body)),
                upload: None,
            };
            let folder = folders[n / args.folder_size];
            edit::create(
                &tx,
                folder,
                &format!("p{n}"),
                Kind::Page,
                fields,
                "bench",
                0.0,
            )?;
        }
        tx.commit()?;
        done = end;
        if done.is_multiple_of(20_000) || done == args.pages {
            println!(
                "generated {done} pages in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    drop(conn);
    drop(db);
    storage.close()?;
    let size = std::fs::metadata(&args.file)?.len();
    println!(
        "generation: {} pages, {:.1} s ({:.0} pages/s), Data.fs {:.0} MiB",
        args.pages,
        started.elapsed().as_secs_f64(),
        args.pages as f64 / started.elapsed().as_secs_f64(),
        size as f64 / 1024.0 / 1024.0
    );
    Ok(())
}

const QUERIES: &[&str] = &[
    "установки",
    "installing",
    "настройка сервера",
    "install server database",
    "самовары",
    "и",
    "the",
    "и не на",
    "раздел 7",
    "кало",
    "sta",
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn query(args: &Args) -> Result<()> {
    let opened = Instant::now();
    let storage = Arc::new(FileStorage::open(&args.file).context("opening the FileStorage")?);
    let db = DB::open(storage.clone())?;
    println!("open: {:.0} ms", ms(opened.elapsed()));
    let mut conn = db.connection();
    let principal = Principal::Anonymous;
    let (count, postings_len) = {
        let tx = conn.begin();
        let ix = bbru::search::index::find(&tx)?.context("no index")?;
        let ix = tx.get(ix)?;
        bbru::search::index::totals(&tx, &ix)?
    };
    println!("index: {count} items, total weighted length {postings_len}");
    println!("| query | results | cold ms | warm median ms | warm p90 ms | warm max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for q in QUERIES {
        let run = |conn: &mut zodb::Connection| -> Result<(Duration, usize, bool)> {
            let tx = conn.begin();
            let t = Instant::now();
            let r = bbru::search::query::search(&tx, &principal, q, 0, 20)?;
            Ok((t.elapsed(), r.total, r.incomplete))
        };
        let (cold, total, incomplete) = run(&mut conn)?;
        let mut warm: Vec<Duration> = (0..args.repeat)
            .map(|_| run(&mut conn).map(|r| r.0))
            .collect::<Result<_>>()?;
        warm.sort();
        let at = |p: f64| warm[((warm.len() - 1) as f64 * p).round() as usize];
        println!(
            "| `{q}` | {total}{} | {:.1} | {:.2} | {:.2} | {:.2} |",
            if incomplete { " (bounded)" } else { "" },
            ms(cold),
            ms(at(0.5)),
            ms(at(0.9)),
            ms(at(1.0)),
        );
    }
    drop(conn);
    drop(db);
    storage.close()?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.reuse {
        generate(&args)?;
    }
    query(&args)
}
