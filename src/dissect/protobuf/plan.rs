//! A compact, cached view of a descriptor pool for decoding: per message type, its fields
//! sorted by number with interned `'static` names and plain-enum types, so decoding a field
//! costs no descriptor look-ups, reference counting or name allocation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

/// A field's protobuf type; messages and enums by their index in the [`PoolPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    Message(u32),
    Enum(u32),
}

pub struct FieldPlan {
    pub number: u32,
    pub name: &'static str,
    pub ty: Ty,
    /// `repeated` (not a map).
    pub list: bool,
    /// A proto2 group.
    pub group: bool,
}

pub struct MsgPlan {
    /// Sorted by number.
    fields: Vec<FieldPlan>,
    /// For field numbers below its length: index into `fields` plus one (0 = none).
    direct: Vec<u16>,
}

impl MsgPlan {
    #[inline]
    pub fn field(&self, number: u32) -> Option<&FieldPlan> {
        if let Some(&i) = self.direct.get(usize::try_from(number).ok()?) {
            return match i {
                0 => None,
                i => self.fields.get(usize::from(i) - 1),
            };
        }
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

pub struct EnumPlan {
    /// Sorted by number.
    values: Vec<(i32, &'static str)>,
}

impl EnumPlan {
    pub fn name(&self, number: i32) -> Option<&'static str> {
        self.values
            .binary_search_by_key(&number, |v| v.0)
            .ok()
            .and_then(|i| self.values.get(i))
            .map(|v| v.1)
    }
}

pub struct PoolPlan {
    pub msgs: Vec<MsgPlan>,
    pub enums: Vec<EnumPlan>,
    by_name: HashMap<String, u32>,
}

impl PoolPlan {
    pub fn msg(&self, index: u32) -> Option<&MsgPlan> {
        self.msgs.get(index as usize)
    }

    pub fn enum_plan(&self, index: u32) -> Option<&EnumPlan> {
        self.enums.get(index as usize)
    }

    fn build(pool: &DescriptorPool) -> PoolPlan {
        let by_name: HashMap<String, u32> = pool
            .all_messages()
            .enumerate()
            .map(|(i, m)| (m.full_name().to_owned(), i as u32))
            .collect();
        let enum_by_name: HashMap<String, u32> = pool
            .all_enums()
            .enumerate()
            .map(|(i, e)| (e.full_name().to_owned(), i as u32))
            .collect();
        let enums = pool
            .all_enums()
            .map(|e| {
                let mut values: Vec<(i32, &'static str)> =
                    e.values().map(|v| (v.number(), intern(v.name()))).collect();
                values.sort_by_key(|v| v.0);
                // With allow_alias, keep the first name of a number.
                values.dedup_by_key(|v| v.0);
                EnumPlan { values }
            })
            .collect();
        let msgs = pool
            .all_messages()
            .map(|m| {
                let mut fields: Vec<FieldPlan> = m
                    .fields()
                    .map(|f| FieldPlan {
                        number: f.number(),
                        name: intern(f.name()),
                        ty: match f.kind() {
                            Kind::Double => Ty::Double,
                            Kind::Float => Ty::Float,
                            Kind::Int32 => Ty::Int32,
                            Kind::Int64 => Ty::Int64,
                            Kind::Uint32 => Ty::Uint32,
                            Kind::Uint64 => Ty::Uint64,
                            Kind::Sint32 => Ty::Sint32,
                            Kind::Sint64 => Ty::Sint64,
                            Kind::Fixed32 => Ty::Fixed32,
                            Kind::Fixed64 => Ty::Fixed64,
                            Kind::Sfixed32 => Ty::Sfixed32,
                            Kind::Sfixed64 => Ty::Sfixed64,
                            Kind::Bool => Ty::Bool,
                            Kind::String => Ty::String,
                            Kind::Bytes => Ty::Bytes,
                            Kind::Message(m) => by_name
                                .get(m.full_name())
                                .map_or(Ty::Bytes, |&i| Ty::Message(i)),
                            Kind::Enum(e) => enum_by_name
                                .get(e.full_name())
                                .map_or(Ty::Int32, |&i| Ty::Enum(i)),
                        },
                        list: f.is_list(),
                        group: f.is_group(),
                    })
                    .collect();
                fields.sort_by_key(|f| f.number);
                const DIRECT: u32 = 64;
                let mut direct = vec![0u16; DIRECT as usize];
                for (i, f) in fields.iter().enumerate() {
                    if f.number < DIRECT
                        && let Ok(i) = u16::try_from(i + 1)
                    {
                        direct[f.number as usize] = i;
                    }
                }
                MsgPlan { fields, direct }
            })
            .collect();
        PoolPlan {
            msgs,
            enums,
            by_name,
        }
    }
}

/// Field and enum value names live for the program's life (each distinct name once).
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(s) = set.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(s);
    s
}

/// The plan of `desc`'s pool (built on first use, cached for the last few pools) and the
/// index of `desc` in it.
pub fn plan_for(desc: &MessageDescriptor) -> Option<(Arc<PoolPlan>, u32)> {
    const KEEP: usize = 8;
    static PLANS: Mutex<Vec<(DescriptorPool, Arc<PoolPlan>)>> = Mutex::new(Vec::new());
    let pool = desc.parent_pool();
    let plan = {
        let mut plans = PLANS.lock().unwrap_or_else(|e| e.into_inner());
        match plans.iter().find(|(p, _)| p == pool) {
            Some((_, plan)) => plan.clone(),
            None => {
                let plan = Arc::new(PoolPlan::build(pool));
                if plans.len() >= KEEP {
                    plans.remove(0);
                }
                plans.push((pool.clone(), plan.clone()));
                plan
            }
        }
    };
    let index = *plan.by_name.get(desc.full_name())?;
    Some((plan, index))
}
