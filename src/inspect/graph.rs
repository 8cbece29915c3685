//! Time-sequence graphs (the Stevens / tcptrace picture) as SVG or PNG, drawn with plotters.
//!
//! One direction of one conversation: each data segment the sender sent is a vertical bar
//! from its first to its last sequence number at the time it was seen, topped by a dot;
//! retransmissions are drawn in their own colour per cause (timeout, fast, tail loss probe;
//! "inferred" in the legend when the cause was guessed from a pcap), segments that arrived
//! out of order in another. The receiver's cumulative ACK is a step line under the data,
//! its advertised window (ACK + window) a step line above it, and SACK blocks are bars at
//! the time of the ACK that carried them. With [`TimeSequence::panels`], two panels follow
//! under it with the sender's own samples over time — cwnd and bytes in flight, SRTT and
//! RTO — when the capture has them (a live rawtcp stack records them; pcap files do not).
//!
//! [`TimeSequence::data`] gives the numbers behind the picture, so a program (or a test) can
//! check what is drawn without reading pixels.

use super::{Conversation, InspectError, Retransmission, Side};
use crate::proto::{RetransmitCause, Sample};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::net::SocketAddr;
use std::path::Path;

/// Colours, as plotters and the SVG output write them.
pub mod colors {
    use plotters::style::RGBColor;
    /// New data.
    pub const DATA: RGBColor = RGBColor(0x1f, 0x4e, 0xb4);
    /// Data that arrived out of order.
    pub const OUT_OF_ORDER: RGBColor = RGBColor(0x17, 0xa2, 0xb8);
    /// Retransmission after a timeout.
    pub const RTO: RGBColor = RGBColor(0xd6, 0x27, 0x28);
    /// Fast retransmission (RACK, SACK, duplicate ACKs).
    pub const FAST: RGBColor = RGBColor(0xff, 0x8c, 0x00);
    /// Tail loss probe.
    pub const TLP: RGBColor = RGBColor(0x94, 0x3c, 0xc4);
    /// Cumulative ACK line.
    pub const ACK: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
    /// Receive window line.
    pub const WINDOW: RGBColor = RGBColor(0xb8, 0x86, 0x0b);
    /// SACK blocks.
    pub const SACK: RGBColor = RGBColor(0xe3, 0x77, 0xc2);
    /// Congestion window panel line.
    pub const CWND: RGBColor = RGBColor(0x1f, 0x4e, 0xb4);
    /// Bytes-in-flight panel line.
    pub const IN_FLIGHT: RGBColor = RGBColor(0xff, 0x8c, 0x00);
    /// SRTT panel line.
    pub const SRTT: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
    /// RTO panel line.
    pub const RTO_LINE: RGBColor = RGBColor(0xd6, 0x27, 0x28);

    /// `#RRGGBB` as the SVG output writes a colour.
    pub fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }
}

/// What a mark on the graph stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkClass {
    /// Data sent for the first time.
    New,
    /// Data seen below the highest sequence, not seen before, within a round trip.
    OutOfOrder,
    /// Data sent again.
    Retransmission(Retransmission),
}

/// One data segment on the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// Seconds since the conversation's first packet.
    pub time: f64,
    /// First relative sequence number.
    pub seq: i64,
    /// Relative sequence number just past it.
    pub end: i64,
    /// New, out of order, or a retransmission.
    pub class: MarkClass,
}

/// The numbers behind a time-sequence graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphData {
    /// The side whose data is drawn.
    pub sender: Side,
    /// Its address.
    pub from: SocketAddr,
    /// The receiver's address.
    pub to: SocketAddr,
    /// Every segment carrying payload from the sender.
    pub marks: Vec<Mark>,
    /// The receiver's cumulative ACKs: (seconds, relative ACK).
    pub acks: Vec<(f64, i64)>,
    /// ACK plus advertised window: (seconds, relative right edge).
    pub windows: Vec<(f64, i64)>,
    /// SACK blocks: (seconds, left, right).
    pub sacks: Vec<(f64, i64, i64)>,
    /// The sender's own samples: (seconds, sample). Empty for pcap files.
    pub samples: Vec<(f64, Sample)>,
    /// The time axis, seconds.
    pub x_range: (f64, f64),
    /// The sequence axis, relative bytes.
    pub y_range: (i64, i64),
    /// Whether any retransmission cause was inferred rather than reported by the sender.
    pub inferred: bool,
}

impl GraphData {
    /// Data segments drawn (each a bar and a dot).
    pub fn data_points(&self) -> usize {
        self.marks.len()
    }

    /// Retransmissions drawn for a cause.
    pub fn retransmissions(&self, cause: RetransmitCause) -> usize {
        self.marks
            .iter()
            .filter(|m| matches!(m.class, MarkClass::Retransmission(r) if r.cause == cause))
            .count()
    }

    /// Retransmissions drawn, any cause.
    pub fn all_retransmissions(&self) -> usize {
        self.marks
            .iter()
            .filter(|m| matches!(m.class, MarkClass::Retransmission(_)))
            .count()
    }
}

/// A time-sequence graph of one direction of a conversation.
///
/// ```no_run
/// use rawtcp::inspect::{graph::TimeSequence, Capture};
///
/// let capture = Capture::read_pcap("capture.pcap")?;
/// let conv = &capture.conversations()[0];
/// let graph = TimeSequence::new(conv);
/// println!("{} data segments, {} retransmitted", graph.data().data_points(), graph.data().all_retransmissions());
/// graph.save("graph.png")?; // or .svg
/// # Ok::<(), rawtcp::inspect::InspectError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TimeSequence<'a> {
    conv: &'a Conversation,
    sender: Option<Side>,
    panels: bool,
    size: Option<(u32, u32)>,
    title: Option<String>,
}

impl<'a> TimeSequence<'a> {
    /// The graph of `conv`'s busier direction (the side that sent more payload).
    pub fn new(conv: &'a Conversation) -> TimeSequence<'a> {
        TimeSequence {
            conv,
            sender: None,
            panels: false,
            size: None,
            title: None,
        }
    }

    /// Draws the data `side` sent instead of the busier direction's.
    pub fn sender(mut self, side: Side) -> Self {
        self.sender = Some(side);
        self
    }

    /// Adds panels with cwnd and bytes in flight, and SRTT and RTO, over time (when the
    /// capture holds the sender's samples).
    pub fn panels(mut self, yes: bool) -> Self {
        self.panels = yes;
        self
    }

    /// Picture size in pixels (default 1200 × 700, or 1200 × 1100 with panels).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = Some((width.max(200), height.max(150)));
        self
    }

    /// A title instead of the default (the two addresses).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    fn busier(&self) -> Side {
        let mut bytes = [0u64; 2];
        for p in &self.conv.packets {
            bytes[usize::from(self.conv.side_of(p) == Side::Server)] += p.payload_len as u64;
        }
        if bytes[0] > bytes[1] {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// The numbers the picture is drawn from.
    pub fn data(&self) -> GraphData {
        let sender = self.sender.unwrap_or_else(|| self.busier());
        let segs = self.conv.segments();
        let mut d = GraphData {
            sender,
            from: self.conv.addr(sender),
            to: self.conv.addr(sender.other()),
            marks: Vec::new(),
            acks: Vec::new(),
            windows: Vec::new(),
            sacks: Vec::new(),
            samples: Vec::new(),
            x_range: (0.0, 1.0),
            y_range: (0, 1),
            inferred: false,
        };
        let mut t_max = 0f64;
        for s in &segs {
            let p = &self.conv.packets[s.index];
            let t = s.time.as_secs_f64();
            t_max = t_max.max(t);
            if s.side == sender {
                if let Some(sample) = p.sample {
                    d.samples.push((t, sample));
                }
                if p.payload_len == 0 {
                    continue;
                }
                let class = match (s.retransmission, s.out_of_order) {
                    (Some(r), _) => {
                        d.inferred |= r.inferred;
                        MarkClass::Retransmission(r)
                    }
                    (None, true) => MarkClass::OutOfOrder,
                    (None, false) => MarkClass::New,
                };
                // The data only: a SYN or FIN riding along takes no room on the graph.
                let seq = s.seq + i64::from(p.tcp.flags.contains(crate::wire::TcpFlags::SYN));
                d.marks.push(Mark {
                    time: t,
                    seq,
                    end: seq + p.payload_len as i64,
                    class,
                });
            } else if let Some(a) = s.ack {
                d.acks.push((t, a));
                d.windows.push((t, a + s.window as i64));
                for &(l, r) in &s.sack {
                    d.sacks.push((t, l, r));
                }
            }
        }
        let ys = d
            .marks
            .iter()
            .flat_map(|m| [m.seq, m.end])
            .chain(d.acks.iter().map(|a| a.1));
        let (lo, hi) = ys.fold((i64::MAX, i64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (lo, hi) = if lo > hi { (0, 1) } else { (lo.min(0), hi) };
        let pad = ((hi - lo) / 25).max(1);
        d.y_range = (lo, hi + pad);
        d.x_range = (0.0, if t_max > 0.0 { t_max * 1.02 } else { 1e-3 });
        d
    }

    /// Writes the graph to `path`: SVG or PNG by the file's extension.
    ///
    /// # Errors
    ///
    /// [`InspectError::Render`] for another extension or when drawing fails,
    /// [`InspectError::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), InspectError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(std::fs::write(path, self.render_svg()?)?),
            Some("png") => self.render_png(path),
            _ => Err(InspectError::Render(format!(
                "{}: the file name must end in .svg or .png",
                path.display()
            ))),
        }
    }

    fn dimensions(&self, data: &GraphData) -> (u32, u32) {
        self.size
            .unwrap_or(if self.panels && !data.samples.is_empty() {
                (1200, 1100)
            } else {
                (1200, 700)
            })
    }

    /// The graph as an SVG document.
    pub fn render_svg(&self) -> Result<String, InspectError> {
        let data = self.data();
        let mut out = String::new();
        {
            let root =
                SVGBackend::with_string(&mut out, self.dimensions(&data)).into_drawing_area();
            self.draw(&root, &data)?;
            root.present().map_err(render_err)?;
        }
        Ok(out)
    }

    /// Writes the graph as a PNG file.
    pub fn render_png(&self, path: &Path) -> Result<(), InspectError> {
        let data = self.data();
        // Checked here: plotters' bitmap backend reports an unwritable path only on
        // present, with a less helpful message.
        std::fs::File::create(path).map_err(|e| {
            InspectError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", path.display()),
            ))
        })?;
        let root = BitMapBackend::new(path, self.dimensions(&data)).into_drawing_area();
        self.draw(&root, &data)?;
        root.present().map_err(render_err)?;
        Ok(())
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        d: &GraphData,
    ) -> Result<(), InspectError>
    where
        DB::ErrorType: 'static,
    {
        register_font();
        root.fill(&WHITE).map_err(render_err)?;
        let with_panels = self.panels && !d.samples.is_empty();
        let (main, rest) = if with_panels {
            let h = root.dim_in_pixel().1;
            let (a, b) = root.split_vertically((h as f64 * 0.58) as u32);
            (a, Some(b))
        } else {
            (root.clone(), None)
        };
        let title = self.title.clone().unwrap_or_else(|| {
            format!("time-sequence graph: {} -> {} ({})", d.from, d.to, d.sender)
        });
        draw_main(&main, d, &title)?;
        if let Some(rest) = rest {
            let parts = rest.split_evenly((2, 1));
            draw_panel(
                &parts[0],
                d,
                "window (KB)",
                [
                    ("cwnd", colors::CWND, &|s: &Sample| s.cwnd as f64 / 1000.0),
                    ("bytes in flight", colors::IN_FLIGHT, &|s: &Sample| {
                        s.in_flight as f64 / 1000.0
                    }),
                ],
            )?;
            draw_panel(
                &parts[1],
                d,
                "time (ms)",
                [
                    ("SRTT", colors::SRTT, &|s: &Sample| {
                        s.srtt.map_or(f64::NAN, |r| r.as_secs_f64() * 1e3)
                    }),
                    ("RTO", colors::RTO_LINE, &|s: &Sample| {
                        s.rto.as_secs_f64() * 1e3
                    }),
                ],
            )?;
        }
        Ok(())
    }
}

fn render_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> InspectError {
    InspectError::Render(e.to_string())
}

/// DejaVu Sans as plotters' "sans-serif", once per process: text is laid out the same on
/// every machine, with no system fonts needed.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// `1234567` as `1.23M`, for the sequence axis.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Step line through `(t, y)` points: each value holds until the next one.
fn steps(points: &[(f64, i64)], t_end: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(t, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((t, points[i - 1].1 as f64));
        }
        out.push((t, y as f64));
    }
    if let Some(&(_, y)) = points.last() {
        out.push((t_end, y as f64));
    }
    out
}

/// Runs of a polyline that stay at or under `top`, so a window far above the data leaves
/// the picture instead of being drawn along its edge.
fn under(points: Vec<(f64, f64)>, top: f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for p in points {
        if p.1 <= top {
            if let Some(r) = runs.last_mut() {
                r.push(p);
            }
        } else if runs.last().is_some_and(|r| !r.is_empty()) {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| r.len() > 1);
    runs
}

fn cause_style(r: Retransmission) -> (RGBColor, &'static str) {
    match r.cause {
        RetransmitCause::Timeout => (colors::RTO, "retransmission: timeout (RTO)"),
        RetransmitCause::Fast => (colors::FAST, "retransmission: fast (RACK/SACK/dup ACKs)"),
        RetransmitCause::LossProbe => (colors::TLP, "retransmission: tail loss probe"),
    }
}

fn swatch(c: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], c.filled())
}

fn draw_main<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &GraphData,
    title: &str,
) -> Result<(), InspectError>
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = d.x_range;
    let (y0, y1) = (d.y_range.0 as f64, d.y_range.1 as f64);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(render_err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("sequence number (bytes, relative)")
        .y_label_formatter(&|v| short(*v))
        .x_label_formatter(&|v| format!("{v:.3}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(render_err)?;

    // Lines first, marks on top.
    let windows = under(steps(&d.windows, x1), y1);
    let window_label = if windows.is_empty() && !d.windows.is_empty() {
        "receive window (ACK + window): above the plot"
    } else {
        "receive window (ACK + window)"
    };
    chart
        .draw_series(
            windows
                .into_iter()
                .map(|run| PathElement::new(run, colors::WINDOW.stroke_width(2))),
        )
        .map_err(render_err)?
        .label(window_label)
        .legend(swatch(colors::WINDOW));
    chart
        .draw_series(std::iter::once(PathElement::new(
            steps(&d.acks, x1),
            colors::ACK.stroke_width(2),
        )))
        .map_err(render_err)?
        .label("cumulative ACK")
        .legend(swatch(colors::ACK));
    if !d.sacks.is_empty() {
        chart
            .draw_series(d.sacks.iter().map(|&(t, l, r)| {
                PathElement::new(
                    vec![(t, l as f64), (t, r as f64)],
                    colors::SACK.stroke_width(4),
                )
            }))
            .map_err(render_err)?
            .label("SACK blocks")
            .legend(swatch(colors::SACK));
    }

    let classes: [(&str, RGBColor, MarkFilter, u32); 2] = [
        ("data", colors::DATA, |c| *c == MarkClass::New, 2),
        (
            "out of order",
            colors::OUT_OF_ORDER,
            |c| *c == MarkClass::OutOfOrder,
            3,
        ),
    ];
    for (label, color, pick, r) in classes {
        let marks: Vec<&Mark> = d.marks.iter().filter(|m| pick(&m.class)).collect();
        if marks.is_empty() && label != "data" {
            continue;
        }
        draw_marks(&mut chart, &marks, color, r, label)?;
    }
    for cause in [
        RetransmitCause::Fast,
        RetransmitCause::LossProbe,
        RetransmitCause::Timeout,
    ] {
        let marks: Vec<&Mark> = d
            .marks
            .iter()
            .filter(|m| matches!(m.class, MarkClass::Retransmission(r) if r.cause == cause))
            .collect();
        let Some(first) = marks.first() else {
            continue;
        };
        let MarkClass::Retransmission(r) = first.class else {
            continue;
        };
        let (color, label) = cause_style(r);
        let label = if marks
            .iter()
            .any(|m| matches!(m.class, MarkClass::Retransmission(r) if r.inferred))
        {
            format!("{label}, inferred")
        } else {
            label.to_string()
        };
        draw_marks(&mut chart, &marks, color, 5, &label)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x99, 0x99, 0x99))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(render_err)?;
    Ok(())
}

/// Which marks a legend entry covers.
type MarkFilter = fn(&MarkClass) -> bool;

/// A panel's line: its label, colour and the value it takes from a sample.
type PanelLine<'a> = (&'a str, RGBColor, &'a dyn Fn(&Sample) -> f64);

type Chart<'a, 'b, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Segments: each a bar over its sequence range and a dot at its top; the legend entry goes
/// with the dots.
fn draw_marks<DB: DrawingBackend>(
    chart: &mut Chart<'_, '_, DB>,
    marks: &[&Mark],
    color: RGBColor,
    radius: u32,
    label: &str,
) -> Result<(), InspectError>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(marks.iter().map(|m| {
            PathElement::new(
                vec![(m.time, m.seq as f64), (m.time, m.end as f64)],
                color.stroke_width(2),
            )
        }))
        .map_err(render_err)?;
    chart
        .draw_series(
            marks
                .iter()
                .map(|m| Circle::new((m.time, m.end as f64), radius, color.filled())),
        )
        .map_err(render_err)?
        .label(label)
        .legend(swatch(color));
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &GraphData,
    unit: &str,
    lines: [PanelLine<'_>; 2],
) -> Result<(), InspectError>
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = d.x_range;
    let top = lines
        .iter()
        .flat_map(|(_, _, f)| d.samples.iter().map(move |(_, s)| f(s)))
        .filter(|v| v.is_finite())
        .fold(0f64, f64::max);
    let top = if top > 0.0 { top * 1.08 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(84)
        .build_cartesian_2d(x0..x1, 0f64..top)
        .map_err(render_err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(unit)
        .x_label_formatter(&|v| format!("{v:.3}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(render_err)?;
    for (label, color, f) in lines {
        // A step line: each sample holds until the next; gaps where a value is unknown.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, (t, s)) in d.samples.iter().enumerate() {
            let v = f(s);
            if !v.is_finite() {
                if runs.last().is_some_and(|r| !r.is_empty()) {
                    runs.push(Vec::new());
                }
                continue;
            }
            if let Some(run) = runs.last_mut() {
                if let (Some(&(_, prev)), true) = (run.last(), i > 0) {
                    run.push((*t, prev));
                }
                run.push((*t, v));
            }
        }
        runs.retain(|r| !r.is_empty());
        chart
            .draw_series(
                runs.into_iter()
                    .map(|r| PathElement::new(r, color.stroke_width(2))),
            )
            .map_err(render_err)?
            .label(label)
            .legend(swatch(color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x99, 0x99, 0x99))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(render_err)?;
    Ok(())
}
