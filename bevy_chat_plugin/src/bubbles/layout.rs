//! Where a speaker's stack of bubbles goes on screen: pure math on a projected point, tested
//! without a camera.

use bevy::prelude::*;

/// Projects a world point to viewport coordinates (logical pixels, origin top-left, relative to
/// the viewport's corner) the way `Camera::world_to_viewport` does, from the camera's projection
/// matrix (`Camera::clip_from_view`), its transform and its viewport size. `None` when the point
/// is behind the camera, beyond its far plane, or the matrices are degenerate.
pub fn project_to_viewport(
    clip_from_view: Mat4,
    camera_transform: &GlobalTransform,
    world: Vec3,
    viewport_size: Vec2,
) -> Option<Vec2> {
    let view = camera_transform.affine().inverse().transform_point3(world);
    let ndc = clip_from_view.project_point3(view);
    if ndc.is_nan() || !(0.0..=1.0).contains(&ndc.z) {
        return None;
    }
    Some(Vec2::new(
        (ndc.x + 1.0) / 2.0 * viewport_size.x,
        (1.0 - ndc.y) / 2.0 * viewport_size.y,
    ))
}

/// The screen placement of a stack: its bottom-centre sits `vertical_offset` above the speaker's
/// anchor point. Values are UI pixels (logical pixels divided by `UiScale`), relative to the
/// camera's viewport.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StackPlacement {
    /// Distance from the viewport's left edge to the stack's left edge.
    pub left: f32,
    /// Distance from the viewport's bottom edge to the stack's bottom edge.
    pub bottom: f32,
    /// The stack's width (its bubbles are centred in it).
    pub width: f32,
}

/// Places a stack of bubbles at most `max_width` wide above `anchor`, the speaker's point in
/// viewport coordinates (logical pixels, origin top-left, as `Camera::world_to_viewport` gives
/// relative to the viewport's corner). `None` (hide the stack) when there is no point (behind
/// the camera) or it lies outside the viewport.
pub fn place_stack(
    anchor: Option<Vec2>,
    viewport_size: Vec2,
    max_width: f32,
    vertical_offset: f32,
    ui_scale: f32,
) -> Option<StackPlacement> {
    let anchor = anchor?;
    let inside = anchor.x >= 0.0
        && anchor.y >= 0.0
        && anchor.x <= viewport_size.x
        && anchor.y <= viewport_size.y;
    if !inside || !anchor.is_finite() || ui_scale <= 0.0 {
        return None;
    }
    Some(StackPlacement {
        left: anchor.x / ui_scale - max_width / 2.0,
        bottom: (viewport_size.y - anchor.y) / ui_scale + vertical_offset,
        width: max_width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bevy::camera::CameraProjection;

    const VIEW: Vec2 = Vec2::new(1280.0, 720.0);

    #[test]
    fn the_stack_is_centred_above_the_anchor() {
        let placed = place_stack(Some(Vec2::new(640.0, 400.0)), VIEW, 200.0, 30.0, 1.0).unwrap();
        assert_eq!(placed.left, 540.0);
        assert_eq!(placed.bottom, 720.0 - 400.0 + 30.0);
        assert_eq!(placed.width, 200.0);
    }

    #[test]
    fn ui_scale_divides_the_screen_position_only() {
        let placed = place_stack(Some(Vec2::new(640.0, 400.0)), VIEW, 200.0, 30.0, 2.0).unwrap();
        assert_eq!(placed.left, 320.0 - 100.0);
        assert_eq!(placed.bottom, 160.0 + 30.0);
    }

    #[test]
    fn behind_the_camera_or_off_screen_hides_the_stack() {
        assert_eq!(place_stack(None, VIEW, 200.0, 30.0, 1.0), None);
        for off in [
            Vec2::new(-1.0, 10.0),
            Vec2::new(10.0, -1.0),
            Vec2::new(1281.0, 10.0),
            Vec2::new(10.0, 721.0),
            Vec2::new(f32::NAN, 10.0),
        ] {
            assert_eq!(
                place_stack(Some(off), VIEW, 200.0, 30.0, 1.0),
                None,
                "{off}"
            );
        }
        // Edges count as inside.
        assert!(place_stack(Some(Vec2::ZERO), VIEW, 200.0, 30.0, 1.0).is_some());
        assert!(place_stack(Some(VIEW), VIEW, 200.0, 30.0, 1.0).is_some());
    }

    fn close(a: Vec2, b: Vec2) -> bool {
        a.distance(b) < 1e-2
    }

    #[test]
    fn a_2d_camera_maps_world_pixels_to_screen_pixels() {
        let mut ortho = OrthographicProjection::default_2d();
        ortho.update(VIEW.x, VIEW.y);
        let clip = ortho.get_clip_from_view();
        // Camera2d sits at z = 0 looking down -z; sprites live at small z in front of far.
        let camera = GlobalTransform::from_xyz(100.0, 0.0, 0.0);
        let at = |p: Vec3| project_to_viewport(clip, &camera, p, VIEW).unwrap();
        assert!(close(at(Vec3::new(100.0, 0.0, 0.0)), VIEW / 2.0));
        // World +y is up; screen y grows downwards.
        assert!(close(
            at(Vec3::new(150.0, 100.0, 1.0)),
            Vec2::new(640.0 + 50.0, 360.0 - 100.0)
        ));
    }

    #[test]
    fn a_3d_camera_projects_in_front_and_rejects_behind() {
        let mut perspective = PerspectiveProjection::default();
        perspective.update(VIEW.x, VIEW.y);
        let clip = perspective.get_clip_from_view();
        let camera = GlobalTransform::from(
            Transform::from_xyz(0.0, 2.0, 10.0).looking_at(Vec3::ZERO, Vec3::Y),
        );
        let centre = project_to_viewport(clip, &camera, Vec3::ZERO, VIEW).unwrap();
        assert!(close(centre, VIEW / 2.0));
        let above = project_to_viewport(clip, &camera, Vec3::Y, VIEW).unwrap();
        assert!(above.y < centre.y, "a higher point is higher on screen");
        assert_eq!(
            project_to_viewport(clip, &camera, Vec3::new(0.0, 2.0, 20.0), VIEW),
            None,
            "behind the camera"
        );
    }
}
